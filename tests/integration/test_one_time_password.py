"""An agent the operator created logs in with the one-time password from their Secret, and must
choose their own before anything else: pages send them to /account/password, the API refuses
them, and the one-time password stops working once they have."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client

from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.config import Settings
from hotelchat.domain.tenants import AgentSpec
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import tenants
from tests.conftest import CIPHER, Tenant
from tests.helpers import login

ONE_TIME = "one-time-" + "p" * 20
MINE = "my own password, at last"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
async def new_agent(tenant: Tenant, admin: asyncpg.Connection) -> str:
    """An agent created as the operator creates them: with a one-time password."""

    async def issue(_email: str) -> str:
        return ONE_TIME

    await tenants.apply_agents(
        Provisioning(admin, CIPHER),
        tenant.hotel_id,
        "chain",
        [AgentSpec("new@a.test", "Nell")],
        issue,
    )
    return "new@a.test"


async def form_csrf(client: Client, path: str) -> str:
    page = await client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
    assert found is not None, await page.get_data(as_text=True)
    return found.group(1)


async def change(client: Client, current: str, new: str, again: str | None = None) -> int:
    csrf = await form_csrf(client, "/account/password")
    response = await client.post(
        "/account/password",
        form={
            "csrf_token": csrf,
            "current_password": current,
            "new_password": new,
            "new_password_again": new if again is None else again,
        },
    )
    return response.status_code


async def test_a_one_time_password_leads_to_choosing_ones_own(
    client: Client, new_agent: str
) -> None:
    assert await login(client, new_agent, ONE_TIME) == 303
    page = await client.get("/dashboard")
    assert (page.status_code, page.headers["Location"]) == (302, "/account/password")
    api = await client.get("/api/conversations")
    assert api.status_code == 403
    assert (await api.get_json())["error"]["code"] == "password_change_required"
    assert await change(client, "wrong password here", MINE) == 400
    assert await change(client, ONE_TIME, "short") == 400
    assert await change(client, ONE_TIME, MINE, again="something else entirely") == 400
    assert await change(client, ONE_TIME, ONE_TIME) == 400
    assert await change(client, ONE_TIME, MINE) == 303
    assert (await client.get("/dashboard")).status_code == 200
    assert (await client.get("/api/conversations")).status_code == 200


async def test_afterwards_only_the_new_password_works(
    client: Client, settings: Settings, new_agent: str
) -> None:
    assert await login(client, new_agent, ONE_TIME) == 303
    assert await change(client, ONE_TIME, MINE) == 303
    app = create_app(settings)
    async with app.test_app() as other:
        fresh = other.test_client()
        assert await login(fresh, new_agent, ONE_TIME) == 401
        assert await login(fresh, new_agent, MINE) == 303
        assert (await fresh.get("/dashboard")).status_code == 200


async def test_the_change_needs_the_session_and_its_csrf_token(
    client: Client, new_agent: str
) -> None:
    anonymous = await client.get("/account/password")
    assert (anonymous.status_code, anonymous.headers["Location"]) == (302, "/login")
    assert await login(client, new_agent, ONE_TIME) == 303
    forged = await client.post(
        "/account/password",
        form={
            "csrf_token": "x" * 43,
            "current_password": ONE_TIME,
            "new_password": MINE,
            "new_password_again": MINE,
        },
    )
    assert forged.status_code == 403


async def test_wrong_current_passwords_are_throttled(client: Client, new_agent: str) -> None:
    assert await login(client, new_agent, ONE_TIME) == 303
    statuses = [await change(client, f"wrong password {n}", MINE) for n in range(6)]
    assert statuses == [400] * 5 + [429]
    assert await change(client, ONE_TIME, MINE) == 429, "even the right one, for a while"
