"""The assistant's settings and monthly AI spend on real PostgreSQL and Redis: what each agent
reads, what only managers change (CSRF, malformed, oversized and out-of-range input), the month
counted in the hotel's own time zone, the `budget` event to the hotel's dashboards after a
change, the worker's budget gauge, and `hotelchat hotels settings`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY
from quart.typing import TestClientProtocol as Client

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.errors import Forbidden, InvalidInput
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import assistant_settings
from hotelchat.services.assistant_settings import AssistantChanges
from hotelchat.services.ports import AgentSession, AssistantSettings
from tests.conftest import Backing, Tenant, create_agent, run_jobs
from tests.helpers import as_browser, as_role, csrf_of, hotelchat, login, receive
from tests.live import TIMEOUT, Live, live_server, login_cookie, socket

DEFAULTS = AssistantSettings(
    ai_enabled=True, ai_model=None, monthly_budget_usd=None, context_token_budget=2500
)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def put(client: Client, csrf: str | None, body: object) -> tuple[int, dict[str, Any]]:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    response = await client.put("/api/assistant", json=body, headers=headers)
    return response.status_code, await response.get_json()


async def spend_on(
    admin: asyncpg.Connection, tenant: Tenant, conversation_id: int, cost: str, at: datetime
) -> None:
    """An automated reply that cost `cost` US dollars, stored at `at`."""
    await admin.execute(
        """INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status,
                                 created_at, cost_usd)
           VALUES ($1, $2, 'outbound', 'ai', 'a reply', 'sent', $3, $4)""",
        tenant.hotel_id,
        conversation_id,
        at,
        Decimal(cost),
    )


async def conversation_of(container: Container, tenant: Tenant) -> int:
    await receive(container, tenant, "Hello")
    (conversation,) = await container.deps.inbox.conversations(
        tenant.hotel_id, states=None, limit=1
    )
    return conversation.id


def month_start(zone: str) -> datetime:
    """The first instant of the current month in time zone `zone`."""
    local = datetime.now(ZoneInfo(zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


# --- reading --------------------------------------------------------------------------------


async def test_every_agent_reads_the_spend_and_only_managers_the_settings(
    client: Client, admin: asyncpg.Connection, tenant: Tenant
) -> None:
    assert (await client.get("/api/assistant")).status_code == 401
    await as_role(client, admin, tenant, "agent")
    agent_view = await (await client.get("/api/assistant")).get_json()
    assert agent_view == {
        "spend": {"spent_usd": 0.0, "budget_usd": None, "used": None},
        "ai_enabled": True,
        "manager": False,
        "settings": None,
    }
    await client.post("/logout", form={"csrf_token": await csrf_of(client)})
    await as_role(client, admin, tenant, "manager")
    manager_view = await (await client.get("/api/assistant")).get_json()
    assert manager_view["manager"] is True
    assert manager_view["settings"] == {
        "ai_enabled": True,
        "ai_model": None,
        "default_model": "gpt-4o-mini",
        "monthly_budget_usd": None,
        "context_token_budget": 2500,
        "image_understanding": False,
    }


# --- changing -------------------------------------------------------------------------------


async def test_two_managers_saving_different_settings_at_once_both_keep_theirs(
    tenant: Tenant, container: Container
) -> None:
    deps = container.deps
    # Both read the same settings, then save one field each, at the same moment.
    await asyncio.gather(
        assistant_settings.change_assistant(
            deps, tenant.hotel_id, AssistantChanges(monthly_budget_usd=12.5)
        ),
        assistant_settings.change_assistant(
            deps, tenant.hotel_id, AssistantChanges(ai_model="gpt-4.1-mini")
        ),
    )
    settings = await deps.hotels.assistant_settings(tenant.hotel_id)
    assert (settings.monthly_budget_usd, settings.ai_model) == (12.5, "gpt-4.1-mini")


async def test_a_manager_changes_what_the_body_names(
    client: Client, admin: asyncpg.Connection, tenant: Tenant, container: Container
) -> None:
    csrf = await as_role(client, admin, tenant, "manager")
    status, body = await put(
        client,
        csrf,
        {"monthly_budget_usd": 50, "context_token_budget": 4000, "ai_model": " gpt-4.1-mini "},
    )
    assert status == 200, body
    assert body["settings"] == {
        "ai_enabled": True,
        "ai_model": "gpt-4.1-mini",
        "default_model": "gpt-4o-mini",
        "monthly_budget_usd": 50.0,
        "context_token_budget": 4000,
        "image_understanding": False,
    }
    assert body["spend"] == {"spent_usd": 0.0, "budget_usd": 50.0, "used": 0.0}
    # Only what is named changes; null means "none" for the budget and "default" for the model.
    status, body = await put(client, csrf, {"ai_enabled": False, "ai_model": None})
    assert status == 200
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == AssistantSettings(
        ai_enabled=False, ai_model=None, monthly_budget_usd=50.0, context_token_budget=4000
    )
    status, body = await put(client, csrf, {"monthly_budget_usd": None, "ai_model": ""})
    assert (status, body["settings"]["monthly_budget_usd"], body["ai_enabled"]) == (
        200,
        None,
        False,
    )
    # Cents are kept, fractions of a cent are not.
    status, body = await put(client, csrf, {"monthly_budget_usd": 12.345})
    assert body["settings"]["monthly_budget_usd"] == 12.35
    status, body = await put(client, csrf, {"monthly_budget_usd": 0})
    assert body["spend"]["used"] == 1.0  # a budget of nothing is spent
    status, body = await put(client, csrf, {})
    assert status == 200  # nothing named, nothing changed
    row = await admin.fetchrow(
        "SELECT ai_enabled, ai_model, monthly_budget_usd, context_token_budget FROM hotels"
    )
    assert row is not None
    assert tuple(row) == (False, None, Decimal("0.00"), 4000)


async def test_agents_cannot_change_the_settings(
    client: Client, admin: asyncpg.Connection, tenant: Tenant, container: Container
) -> None:
    csrf = await as_role(client, admin, tenant, "agent")
    status, body = await put(client, csrf, {"ai_enabled": False, "monthly_budget_usd": 1})
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == DEFAULTS


async def test_a_manager_of_another_hotel_cannot_change_this_ones(
    client: Client,
    admin: asyncpg.Connection,
    tenant: Tenant,
    other_tenant: Tenant,
    container: Container,
) -> None:
    await create_agent(admin, "mo@a.test", [tenant.slug], role="agent")
    await admin.execute(
        """INSERT INTO agent_hotels (agent_id, hotel_id, role)
           SELECT id, $1, 'manager' FROM agents WHERE email = 'mo@a.test'""",
        other_tenant.hotel_id,
    )
    assert await login(client, "mo@a.test") == 303
    csrf = await csrf_of(client)
    # Logged in to hotel A (first membership), where Mo is an agent.
    me = await (await client.get("/api/me")).get_json()
    assert me["hotel_id"] == tenant.hotel_id
    status, _ = await put(client, csrf, {"monthly_budget_usd": 1})
    assert status == 403
    view = await (await client.get("/api/assistant")).get_json()
    assert (view["manager"], view["settings"]) == (False, None)
    # In hotel B, where Mo manages, the change lands there only.
    switched = await client.post(
        "/api/hotel", json={"hotel_id": other_tenant.hotel_id}, headers={"X-CSRF-Token": csrf}
    )
    assert switched.status_code == 200
    status, _ = await put(client, csrf, {"monthly_budget_usd": 7})
    assert status == 200
    assert (await container.deps.hotels.assistant_settings(tenant.hotel_id)) == DEFAULTS
    theirs = await container.deps.hotels.assistant_settings(other_tenant.hotel_id)
    assert theirs.monthly_budget_usd == 7.0


async def test_changing_needs_the_csrf_token(
    client: Client, admin: asyncpg.Connection, tenant: Tenant, container: Container
) -> None:
    assert (await put(client, None, {"ai_enabled": False}))[0] == 401
    await as_role(client, admin, tenant, "manager")
    assert (await put(client, None, {"ai_enabled": False}))[0] == 403
    assert (await put(client, "forged-" + "y" * 40, {"ai_enabled": False}))[0] == 403
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == DEFAULTS


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (None, "JSON object"),
        ([], "JSON object"),
        ({"monthly_budget_usd": -1}, "monthly budget"),
        ({"monthly_budget_usd": -0.01}, "monthly budget"),
        ({"monthly_budget_usd": 1_000_000.01}, "monthly budget"),
        ({"monthly_budget_usd": 1e308}, "monthly budget"),
        ({"monthly_budget_usd": "50"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": True}, "monthly_budget_usd"),
        ({"context_token_budget": 199}, "context tokens"),
        ({"context_token_budget": 100_001}, "context tokens"),
        ({"context_token_budget": 10**30}, "context tokens"),
        ({"context_token_budget": 2500.5}, "context_token_budget"),
        ({"context_token_budget": None}, "context_token_budget"),
        ({"ai_enabled": "yes"}, "ai_enabled"),
        ({"ai_enabled": 1}, "ai_enabled"),
        ({"ai_enabled": None}, "ai_enabled"),
        ({"image_understanding": "on"}, "image_understanding"),
        ({"image_understanding": None}, "image_understanding"),
        ({"ai_model": "gpt 4o; DROP TABLE hotels"}, "model"),
        ({"ai_model": "m" * 101}, "model"),
        ({"ai_model": "m" * 300}, "ai_model"),
        ({"ai_model": 5}, "ai_model"),
        ({"budget": 5}, "budget"),
    ],
)
async def test_bad_settings_are_400_and_change_nothing(
    client: Client,
    admin: asyncpg.Connection,
    tenant: Tenant,
    container: Container,
    body: object,
    error: str,
) -> None:
    csrf = await as_role(client, admin, tenant, "manager")
    if isinstance(body, dict):
        body = {"ai_enabled": False, **body}  # a valid change next to the bad one is not made
    status, answer = await put(client, csrf, body)
    assert (status, answer["error"]["code"]) == (400, "invalid_input")
    assert error in answer["error"]["message"]
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == DEFAULTS


async def test_non_numbers_and_oversized_bodies(
    client: Client, admin: asyncpg.Connection, tenant: Tenant, container: Container
) -> None:
    csrf = await as_role(client, admin, tenant, "manager")
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    for raw in ('{"monthly_budget_usd": NaN}', '{"monthly_budget_usd": Infinity}', "{"):
        response = await client.put("/api/assistant", data=raw, headers=headers)
        assert response.status_code == 400, raw
    huge = '{"ai_model": "' + "m" * 100_000 + '"}'
    response = await client.put("/api/assistant", data=huge, headers=headers)
    assert response.status_code == 413
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == DEFAULTS


async def test_the_service_checks_its_input_and_the_managers_role(
    container: Container, tenant: Tenant
) -> None:
    deps = container.deps
    for bad in (
        AssistantChanges(monthly_budget_usd=float("nan")),
        AssistantChanges(monthly_budget_usd=float("inf")),
        AssistantChanges(monthly_budget_usd=-5.0),
        AssistantChanges(context_token_budget=True),
        AssistantChanges(ai_model="x" * 101),
    ):
        with pytest.raises(InvalidInput):
            await assistant_settings.change_assistant(deps, tenant.hotel_id, bad)
    # The adapter refuses what would slip past the table's checks (NaN >= 0 is true there).
    with pytest.raises(InvalidInput):
        await deps.hotels.update_assistant_settings(
            tenant.hotel_id, {"monthly_budget_usd": float("nan")}
        )
    with pytest.raises(InvalidInput, match="no such setting"):
        await deps.hotels.update_assistant_settings(tenant.hotel_id, {"slug": "taken"})
    assert await deps.hotels.assistant_settings(tenant.hotel_id) == DEFAULTS
    with pytest.raises(Forbidden):
        await assistant_settings.update_assistant(
            deps, _session(tenant.hotel_id), AssistantChanges(ai_enabled=False)
        )


def _session(hotel_id: int) -> AgentSession:
    """A session of an agent who is no manager of hotel `hotel_id`."""
    return AgentSession(999_999, "Nobody", hotel_id, "hotel-a", "c" * 43, datetime.now(UTC))


# --- the month's spend ----------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Pacific/Pago_Pago", "Pacific/Kiritimati", "UTC"])
async def test_the_month_is_counted_in_the_hotels_time_zone(
    client: Client,
    admin: asyncpg.Connection,
    tenant: Tenant,
    other_tenant: Tenant,
    container: Container,
    zone: str,
) -> None:
    await admin.execute(
        "UPDATE hotels SET timezone = $1, monthly_budget_usd = 10 WHERE id = $2",
        zone,
        tenant.hotel_id,
    )
    conversation = await conversation_of(container, tenant)
    start = month_start(zone)
    # UTC-11 and UTC+14: a minute either side of the hotel's midnight on the 1st falls in the
    # same UTC month, so a UTC count would get one of them wrong.
    await spend_on(admin, tenant, conversation, "0.5", start - timedelta(minutes=1))
    await spend_on(admin, tenant, conversation, "3.25", start + timedelta(minutes=1))
    await spend_on(admin, tenant, conversation, "5", datetime.now(UTC) - timedelta(seconds=5))
    await spend_on(admin, tenant, conversation, "100", start - timedelta(days=20))
    theirs = await conversation_of(container, other_tenant)
    await spend_on(admin, other_tenant, theirs, "7", datetime.now(UTC))

    await as_role(client, admin, tenant, "agent")
    view = await (await client.get("/api/assistant")).get_json()
    assert view["spend"] == {"spent_usd": 8.25, "budget_usd": 10.0, "used": 0.825}
    spend = dict(await container.deps.hotels.all_spend())
    assert (spend[tenant.slug].spent_usd, spend[tenant.slug].budget_usd) == (8.25, 10.0)
    assert (spend[other_tenant.slug].spent_usd, spend[other_tenant.slug].budget_usd) == (7.0, None)


async def test_the_worker_sets_the_budget_gauge_of_every_hotel(
    settings: Settings,
    admin: asyncpg.Connection,
    tenant: Tenant,
    other_tenant: Tenant,
    container: Container,
) -> None:
    await admin.execute("UPDATE hotels SET monthly_budget_usd = 4 WHERE id = $1", tenant.hotel_id)
    conversation = await conversation_of(container, tenant)
    await spend_on(admin, tenant, conversation, "3.4", datetime.now(UTC))
    # The guest's message needs no reply here (a reply would spend more).
    await admin.execute("UPDATE messages SET reply_state = 'skipped' WHERE direction = 'inbound'")
    await run_jobs(settings)  # the 15-second cron runs when the worker starts

    def gauge(slug: str) -> float | None:
        return REGISTRY.get_sample_value("hotelchat_ai_budget_used_ratio", {"hotel": slug})

    assert gauge(tenant.slug) == pytest.approx(0.85)
    assert gauge(other_tenant.slug) == 0.0  # no budget
    await admin.execute(
        "UPDATE hotels SET monthly_budget_usd = NULL WHERE id = $1", tenant.hotel_id
    )
    await run_jobs(settings)
    assert gauge(tenant.slug) == 0.0  # a budget removed leaves no stale share behind


# --- the budget event -----------------------------------------------------------------------


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[Live]:
    async with live_server(settings) as server:
        yield server


async def put_over_http(live: Live, cookie: str, body: dict[str, object]) -> int:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.put(
            live.url + "/api/assistant", json=body, headers=await as_browser(http, live, cookie)
        ) as response,
    ):
        return response.status


async def test_a_change_tells_the_hotels_dashboards_and_no_others(
    live: Live, admin: asyncpg.Connection, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug], name="Ana")
    await create_agent(admin, "max@a.test", [tenant.slug], name="Max", role="manager")
    await create_agent(admin, "bo@b.test", [other_tenant.slug], name="Bo")
    conversation = await conversation_of(live.container, tenant)
    await spend_on(admin, tenant, conversation, "9", datetime.now(UTC))
    ana_cookie = await login_cookie(live.url, "ana@a.test")
    max_cookie = await login_cookie(live.url, "max@a.test")
    bo_cookie = await login_cookie(live.url, "bo@b.test")
    async with (
        socket(live.url, "/agent", cookie=ana_cookie) as (ana, ana_events),
        socket(live.url, "/agent", cookie=bo_cookie) as (bo, bo_events),
    ):
        for client, events in ((ana, ana_events), (bo, bo_events)):
            client.on("budget", events.handler("budget"), namespace="/agent")
        assert await put_over_http(live, ana_cookie, {"monthly_budget_usd": 1}) == 403
        assert await put_over_http(live, max_cookie, {"monthly_budget_usd": 10}) == 200
        event = await ana_events.wait_for("budget")
        assert event == {"spent_usd": 9.0, "budget_usd": 10.0, "used": 0.9}
        assert await put_over_http(live, max_cookie, {"monthly_budget_usd": 9}) == 200
        event = await ana_events.wait_for("budget", lambda e: e["budget_usd"] == 9.0)
        assert event["used"] == 1.0
        await asyncio.sleep(0.3)
        assert len(ana_events.events["budget"]) == 2  # the refused change sent nothing
        assert bo_events.events["budget"] == []


# --- the command line -----------------------------------------------------------------------


async def test_the_settings_command_shows_and_changes(
    backing: Backing, admin: asyncpg.Connection, tenant: Tenant, container: Container
) -> None:
    conversation = await conversation_of(container, tenant)
    await spend_on(admin, tenant, conversation, "1.5", datetime.now(UTC))

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            hotelchat, backing, None, "hotels", "settings", "--hotel", tenant.slug, *args
        )

    shown = await cli()
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"hotel:            {tenant.slug}",
        "AI:               on",
        "model:            default (gpt-4o-mini)",
        "context tokens:   2500",
        "photos to model:  off",
        "monthly budget:   none",
        "spent this month: 1.5000 USD",
    ]
    changed = await cli(
        "--budget", "6", "--context-tokens", "3000", "--model", "gpt-4.1", "--ai", "off"
    )
    assert changed.returncode == 0, changed.stderr
    assert "monthly budget:   6.00 USD" in changed.stdout
    assert "spent this month: 1.5000 USD (25% of the budget)" in changed.stdout
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == AssistantSettings(
        ai_enabled=False, ai_model="gpt-4.1", monthly_budget_usd=6.0, context_token_budget=3000
    )
    back = await cli(
        "--budget", "none", "--model", "default", "--ai", "on", "--image-understanding", "on"
    )
    assert back.returncode == 0, back.stderr
    assert "photos to model:  on" in back.stdout
    assert await container.deps.hotels.assistant_settings(tenant.hotel_id) == AssistantSettings(
        ai_enabled=True,
        ai_model=None,
        monthly_budget_usd=None,
        context_token_budget=3000,
        image_understanding=True,
    )
    for bad, message in (
        (("--budget", "-3"), "monthly budget"),
        (("--budget", "nan"), "monthly budget"),
        (("--budget", "lots"), "--budget"),
        (("--context-tokens", "5"), "context tokens"),
        (("--ai", "maybe"), "--ai"),
        (("--image-understanding", "yes"), "--image-understanding"),
    ):
        refused = await cli(*bad)
        assert refused.returncode != 0, bad
        assert message in refused.stderr, refused.stderr
    unknown = await asyncio.to_thread(
        hotelchat, backing, None, "hotels", "settings", "--hotel", "nope"
    )
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no hotel 'nope'")
    assert (await container.deps.hotels.assistant_settings(tenant.hotel_id)).ai_enabled is True
