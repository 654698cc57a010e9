"""The agent dashboard over HTTP: login with CSRF and throttling, logout, the page's security
headers, and every API action with malformed, forged, oversized and cross-tenant input."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app
from hotelchat.entrypoints.web.context import EXTENSION
from tests.conftest import AGENT_PASSWORD, CIPHER, Tenant, create_agent
from tests.helpers import GUEST, csrf_of, login, post, receive


@dataclass
class Web:
    app: Quart
    client: Client

    @property
    def container(self) -> Container:
        container: Container = self.app.extensions[EXTENSION]
        return container


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[Web]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield Web(app, test_app.test_client())


@pytest.fixture
async def agent(web: Web, tenant: Tenant, admin: asyncpg.Connection) -> str:
    """Agent ana@a.test of hotel A, logged in on `web.client`; returns the CSRF token."""
    await create_agent(admin, "ana@a.test", [tenant.slug])
    assert await login(web.client, "ana@a.test") == 303
    return await csrf_of(web.client)


def reply(text: str = "Of course, we will have it ready.") -> dict[str, str]:
    return {"body": text, "client_id": str(uuid.uuid4())}


# --- login ----------------------------------------------------------------------------------


async def test_pages_need_a_login(web: Web) -> None:
    response = await web.client.get("/dashboard")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    api = await web.client.get("/api/conversations")
    assert api.status_code == 401


async def test_login_sets_a_safe_cookie_and_the_page_a_strict_policy(
    web: Web, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    page = await web.client.get("/login")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
    assert token is not None
    response = await web.client.post(
        "/login",
        form={"email": "ANA@a.test", "password": AGENT_PASSWORD, "csrf_token": token.group(1)},
    )
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "hc_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the public URL is https
    dashboard = await web.client.get("/dashboard")
    assert dashboard.status_code == 200
    policy = dashboard.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert dashboard.headers["X-Frame-Options"] == "DENY"
    assert "Ana" in await dashboard.get_data(as_text=True)


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    web: Web, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    assert await login(web.client, "ana@a.test", "wrong password!") == 401
    assert await login(web.client, "nobody@a.test", "wrong password!") == 401
    page = await web.client.get("/dashboard")
    assert page.status_code == 302


async def test_login_without_its_csrf_token_is_refused(
    web: Web, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    response = await web.client.post(
        "/login", form={"email": "ana@a.test", "password": AGENT_PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert "hc_session" not in response.headers.get("Set-Cookie", "")


async def test_failed_logins_are_throttled(
    web: Web, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    for _ in range(5):
        assert await login(web.client, "ana@a.test", "not the password") == 401
    # Even the right password waits now: guessing has to slow down.
    assert await login(web.client, "ana@a.test") == 429


async def test_logout_ends_the_session_for_good(web: Web, agent: str) -> None:
    status, _ = await post(web.client, "/logout", None)
    assert status == 403  # logging out needs the CSRF token too
    response = await web.client.post("/logout", form={"csrf_token": agent})
    assert response.status_code == 303
    assert (await web.client.get("/api/conversations")).status_code == 401


async def test_a_disabled_agent_is_logged_out(
    web: Web, agent: str, admin: asyncpg.Connection
) -> None:
    await admin.execute("UPDATE agents SET disabled = true")
    assert (await web.client.get("/api/conversations")).status_code == 401


# --- reading ----------------------------------------------------------------------------------


async def test_the_list_and_the_timeline(web: Web, agent: str, tenant: Tenant) -> None:
    first = await receive(web.container, tenant, "Is there parking?")
    await receive(web.container, tenant, "And breakfast?")
    response = await web.client.get("/api/conversations")
    assert response.status_code == 200
    (row,) = (await response.get_json())["conversations"]
    assert row["guest_phone"] == GUEST
    assert row["channel"] == "whatsapp"
    assert row["state"] == "ai"
    assert row["unread"] == 2
    assert row["preview"] == "And breakfast?"
    assert row["window_closes_at"] is not None
    conversation_id = row["id"]
    messages = await web.client.get(f"/api/conversations/{conversation_id}/messages")
    bodies = [m["body"] for m in (await messages.get_json())["messages"]]
    assert bodies == ["Is there parking?", "And breakfast?"]
    after = await web.client.get(f"/api/conversations/{conversation_id}/messages?after={first}")
    assert [m["body"] for m in (await after.get_json())["messages"]] == ["And breakfast?"]
    status, _ = await post(
        web.client, f"/api/conversations/{conversation_id}/read", agent, {"up_to": 10**6}
    )
    assert status == 200
    row = await (await web.client.get(f"/api/conversations/{conversation_id}")).get_json()
    assert row["unread"] == 0


async def test_another_hotels_conversation_is_404_everywhere(
    web: Web, agent: str, other_tenant: Tenant
) -> None:
    message_id = await receive(web.container, other_tenant, "secret of hotel B")
    del message_id
    other = await web.container.deps.inbox.conversations(
        other_tenant.hotel_id, states=None, limit=5
    )
    conversation_id = other[0].id
    for path in (
        f"/api/conversations/{conversation_id}",
        f"/api/conversations/{conversation_id}/messages",
    ):
        response = await web.client.get(path)
        assert response.status_code == 404
        assert "secret" not in await response.get_data(as_text=True)
    for action in ("takeover", "handback", "resolve", "reopen"):
        status, body = await post(
            web.client, f"/api/conversations/{conversation_id}/{action}", agent
        )
        assert (status, body["error"]["code"]) == (404, "not_found")
    status, _ = await post(
        web.client, f"/api/conversations/{conversation_id}/messages", agent, reply()
    )
    assert status == 404
    status, _ = await post(
        web.client, f"/api/conversations/{conversation_id}/notes", agent, reply()
    )
    assert status == 404
    listed = await (await web.client.get("/api/conversations")).get_json()
    assert listed["conversations"] == []


# --- acting -----------------------------------------------------------------------------------


async def conversation_of(web: Web, tenant: Tenant, text: str = "Is there parking?") -> int:
    await receive(web.container, tenant, text)
    rows = await web.container.deps.inbox.conversations(tenant.hotel_id, states=None, limit=5)
    return rows[0].id


async def test_a_reply_takes_over_and_is_queued_once(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    conversation_id = await conversation_of(web, tenant)
    body = reply("Yes, EUR 18 a day.")
    status, first = await post(
        web.client, f"/api/conversations/{conversation_id}/messages", agent, body
    )
    assert status == 201
    assert first["conversation"]["state"] == "agent"
    status, again = await post(
        web.client, f"/api/conversations/{conversation_id}/messages", agent, body
    )
    assert (status, again["id"]) == (200, first["id"])  # a retried request stores nothing new
    rows = await admin.fetch(
        "SELECT author, status, body FROM messages WHERE direction = 'outbound'"
    )
    assert [tuple(r) for r in rows] == [("agent", "pending", "Yes, EUR 18 a day.")]
    # The assistant's pending reply to the guest's message is off: the agent answers now.
    assert (
        await admin.fetchval("SELECT reply_state FROM messages WHERE direction = 'inbound'")
        == "skipped"
    )


async def test_only_one_agent_owns_a_conversation(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection, settings: Settings
) -> None:
    conversation_id = await conversation_of(web, tenant)
    status, _ = await post(web.client, f"/api/conversations/{conversation_id}/takeover", agent)
    assert status == 200
    await create_agent(admin, "bo@a.test", [tenant.slug], name="Bo")
    app = create_app(settings)
    async with app.test_app() as other_app:
        bo = other_app.test_client()
        assert await login(bo, "bo@a.test") == 303
        bo_csrf = await csrf_of(bo)
        for path, body in (
            ("takeover", None),
            ("messages", reply()),
            ("handback", None),
            ("resolve", None),
        ):
            status, answer = await post(
                bo, f"/api/conversations/{conversation_id}/{path}", bo_csrf, body
            )
            assert (status, answer["error"]["code"]) == (409, "owned_by_other_agent"), path
        # A note is always fine: notes are how agents talk to each other.
        status, _ = await post(
            bo, f"/api/conversations/{conversation_id}/notes", bo_csrf, reply("Bo here")
        )
        assert status == 201


async def test_hand_back_resolve_and_reopen(web: Web, agent: str, tenant: Tenant) -> None:
    conversation_id = await conversation_of(web, tenant)
    path = f"/api/conversations/{conversation_id}"
    states = []
    for action in ("takeover", "handback", "resolve", "reopen"):
        status, body = await post(web.client, f"{path}/{action}", agent)
        assert status == 200, body
        states.append(body["state"])
    assert states == ["agent", "ai", "resolved", "agent"]
    status, body = await post(web.client, f"{path}/reopen", agent)
    assert (status, body["error"]["code"]) == (409, "not_resolved")


async def test_internal_notes_are_never_sent_nor_shown_to_the_model(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    from hotelchat.services import replies

    conversation_id = await conversation_of(web, tenant, "Hi")
    status, _ = await post(
        web.client,
        f"/api/conversations/{conversation_id}/notes",
        agent,
        reply("VIP guest, upgrade"),
    )
    assert status == 201
    row = await admin.fetchrow(
        "SELECT direction, status FROM messages WHERE body = 'VIP guest, upgrade'"
    )
    assert row is not None and tuple(row) == ("internal", "received")
    second = await receive(web.container, tenant, "Is there parking?")
    claim = await web.container.store.claim_reply(
        tenant.hotel_id, second, lease_seconds=30, history_turns=10, max_attempts=5
    )
    from hotelchat.services.ports import ReplyClaimed

    assert isinstance(claim, ReplyClaimed)
    assert all("VIP" not in turn.body for turn in claim.context.history)
    del replies


async def test_a_closed_whatsapp_window_refuses_a_reply(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    conversation_id = await conversation_of(web, tenant)
    await admin.execute("UPDATE conversations SET last_inbound_at = now() - interval '25 hours'")
    status, body = await post(
        web.client, f"/api/conversations/{conversation_id}/messages", agent, reply()
    )
    assert (status, body["error"]["code"]) == (409, "whatsapp_window_closed")
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0


async def test_state_changes_need_the_csrf_token(web: Web, agent: str, tenant: Tenant) -> None:
    conversation_id = await conversation_of(web, tenant)
    for csrf in (None, "forged-token-forged-token-forged-token"):
        status, body = await post(
            web.client, f"/api/conversations/{conversation_id}/takeover", csrf
        )
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, _ = await post(
            web.client, f"/api/conversations/{conversation_id}/messages", csrf, reply()
        )
        assert status == 403


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {},
        {"body": "hi"},
        {"body": "", "client_id": str(uuid.uuid4())},
        {"body": "   ", "client_id": str(uuid.uuid4())},
        {"body": "hi", "client_id": "not-a-uuid-not-a-uuid-not-a-uuid-x"},
        {"body": 42, "client_id": str(uuid.uuid4())},
        {"body": "x" * 5000, "client_id": str(uuid.uuid4())},
        # Longer than a reply may be (4,800 characters, sent as parts; a note may be longer).
        {"body": "x" * 4801, "client_id": str(uuid.uuid4())},
        {"body": "hi", "client_id": str(uuid.uuid4()), "extra": True},
    ],
)
async def test_malformed_replies_are_400_and_store_nothing(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection, body: object
) -> None:
    conversation_id = await conversation_of(web, tenant)
    status, answer = await post(
        web.client, f"/api/conversations/{conversation_id}/messages", agent, body
    )
    assert status == 400, answer
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction <> 'inbound'") == 0


async def test_oversized_and_odd_requests(web: Web, agent: str, tenant: Tenant) -> None:
    conversation_id = await conversation_of(web, tenant)
    big = {"body": "x" * 100_000, "client_id": str(uuid.uuid4())}
    status, _ = await post(web.client, f"/api/conversations/{conversation_id}/messages", agent, big)
    assert status == 413
    status, _ = await post(web.client, f"/api/conversations/{conversation_id}/explode", agent)
    assert status == 404
    assert (await web.client.get(f"/api/conversations/{10**30}")).status_code == 404
    assert (
        await web.client.get(f"/api/conversations/{conversation_id}/messages?after=-1")
    ).status_code == 400
    assert (await web.client.get("/api/conversations?state=bogus")).status_code == 400


async def test_an_agent_switches_between_their_hotels_only(
    web: Web, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    from hotelchat.adapters.postgres.provisioning import Provisioning

    await Provisioning(admin, CIPHER).create_hotel(
        chain_slug="chain", slug="hotel-c", name="Hotel C"
    )
    await create_agent(admin, "ana@a.test", [tenant.slug, other_tenant.slug])
    assert await login(web.client, "ana@a.test") == 303
    csrf = await csrf_of(web.client)
    await receive(web.container, other_tenant, "hello B")
    me = await (await web.client.get("/api/me")).get_json()
    assert {h["slug"] for h in me["hotels"]} == {"hotel-a", "hotel-b"}
    status, body = await post(web.client, "/api/hotel", csrf, {"hotel_id": other_tenant.hotel_id})
    assert (status, body["slug"]) == (200, "hotel-b")
    rows = (await (await web.client.get("/api/conversations")).get_json())["conversations"]
    assert [r["preview"] for r in rows] == ["hello B"]
    hotel_c = await admin.fetchval("SELECT id FROM hotels WHERE slug = 'hotel-c'")
    status, body = await post(web.client, "/api/hotel", csrf, {"hotel_id": hotel_c})
    assert status == 403
