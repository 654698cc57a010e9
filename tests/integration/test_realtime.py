"""Socket.IO against a live web process: authentication at connect, rooms chosen by the server,
events after commits, typing, presence, the assistant's reply streaming token by token, and an
agent's takeover stopping it. Every client event is also fed malformed and cross-tenant data."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from hotelchat.config import Settings
from hotelchat.emulators import openai_api
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.services import replies
from tests.conftest import PUBLIC_URL, Tenant, create_agent, run_jobs
from tests.helpers import post_webhook
from tests.live import TIMEOUT, Live, live_server, login_cookie, socket


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[Live]:
    async with live_server(settings) as server:
        yield server


@pytest.fixture
async def cookie(live: Live, tenant: Tenant, admin: asyncpg.Connection) -> str:
    await create_agent(admin, "ana@a.test", [tenant.slug])
    return await login_cookie(live.url, "ana@a.test")


async def start_web_chat(live: Live, slug: str) -> tuple[str, int]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(f"{live.url}/chat/{slug}/session", json={}) as r,
    ):
        assert r.status == 200
        body = await r.json()
        return body["token"], body["conversation_id"]


async def guest_says(live: Live, slug: str, token: str, text: str) -> int:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(
            f"{live.url}/chat/{slug}/messages",
            json={"body": text, "client_id": str(uuid.uuid4())},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 201, await r.text()
        message_id: int = (await r.json())["id"]
        return message_id


@pytest.mark.parametrize("cookie_value", [None, "forged-session-token", "x" * 500])
async def test_an_agent_socket_needs_a_live_session(live: Live, cookie_value: str | None) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        async with socket(live.url, "/agent", cookie=cookie_value):
            pass


@pytest.mark.parametrize("token", [None, "forged", "a.b.c", "x" * 2000])
async def test_a_guest_socket_needs_a_valid_token(live: Live, token: str | None) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        async with socket(live.url, "/guest", token=token):
            pass


async def test_a_whatsapp_message_reaches_the_agents_screen(
    live: Live, cookie: str, tenant: Tenant
) -> None:
    async with socket(live.url, "/agent", cookie=cookie) as (_client, events):
        await post_webhook(live.url, tenant, "Is there parking?", signed_for=PUBLIC_URL)
        row = await events.wait_for("conversation", lambda c: c["preview"] == "Is there parking?")
        assert (row["state"], row["unread"], row["channel"]) == ("ai", 1, "whatsapp")


async def test_watching_needs_a_conversation_of_the_agents_hotel(
    live: Live, cookie: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    await post_webhook(live.url, other_tenant, "hotel B's guest", signed_for=PUBLIC_URL)
    (theirs,) = await live.container.deps.inbox.conversations(
        other_tenant.hotel_id, states=None, limit=1
    )
    await post_webhook(live.url, tenant, "hotel A's guest", signed_for=PUBLIC_URL)
    (ours,) = await live.container.deps.inbox.conversations(tenant.hotel_id, states=None, limit=1)
    async with socket(live.url, "/agent", cookie=cookie) as (client, events):
        call = client.call
        assert await call("watch", {"conversation_id": theirs.id}, namespace="/agent") == {
            "error": "not_found"
        }
        bad: object
        for bad in (None, "1", [], {}, {"conversation_id": "1"}, {"conversation_id": True},
                    {"conversation_id": -5}, {"conversation_id": 10**30},
                    {"conversation_id": ours.id, "a": 1, "b": 2, "c": 3, "d": 4}):  # fmt: skip
            assert await call("watch", bad, namespace="/agent") == {"error": "invalid"}, bad
        assert await call("typing", {"conversation_id": ours.id}, namespace="/agent") == {
            "error": "not_watching"
        }
        assert await call("presence", {"status": "asleep"}, namespace="/agent") == {
            "error": "invalid"
        }
        assert await call("watch", {"conversation_id": ours.id}, namespace="/agent") == {"ok": True}
        # Events of hotel B's conversation never reach hotel A's agent.
        await post_webhook(live.url, other_tenant, "another from B", signed_for=PUBLIC_URL)
        await post_webhook(live.url, tenant, "another from A", signed_for=PUBLIC_URL)
        await events.wait_for("message", lambda m: m["conversation_id"] == ours.id)
        assert all(m["conversation_id"] == ours.id for m in events.events["message"])
        assert all(c["id"] == ours.id for c in events.events["conversation"])


async def test_typing_and_presence_between_agents(
    live: Live, cookie: str, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "bo@a.test", [tenant.slug], name="Bo")
    bo_cookie = await login_cookie(live.url, "bo@a.test")
    await post_webhook(live.url, tenant, "Hello", signed_for=PUBLIC_URL)
    (conversation,) = await live.container.deps.inbox.conversations(
        tenant.hotel_id, states=None, limit=1
    )
    watch = {"conversation_id": conversation.id}
    async with socket(live.url, "/agent", cookie=cookie) as (ana, ana_events):
        async with socket(live.url, "/agent", cookie=bo_cookie) as (bo, bo_events):
            online = await ana_events.wait_for("presence", lambda p: is_(p, "Bo"))
            assert is_(online, "Bo", "online")
            # Bo learns at once who was already here.
            present = await bo_events.wait_for("presence_list")
            assert {(a["name"], a["status"]) for a in present["agents"]} == {
                ("Ana", "online"),
                ("Bo", "online"),
            }
            assert await ana.call("watch", watch, namespace="/agent") == {"ok": True}
            assert await bo.call("watch", watch, namespace="/agent") == {"ok": True}
            assert await bo.call("typing", watch, namespace="/agent") == {"ok": True}
            typing = await ana_events.wait_for("typing")
            assert (typing["name"], typing["conversation_id"]) == ("Bo", conversation.id)
            assert await bo.call("presence", {"status": "away"}, namespace="/agent") == {"ok": True}
            await ana_events.wait_for("presence", lambda p: is_(p, "Bo", "away"))
        await ana_events.wait_for("presence", lambda p: is_(p, "Bo", "offline"))


def is_(presence: dict[str, Any], name: str, status: str | None = None) -> bool:
    """Whether a `presence` event says `name` is now `status` (any status when None)."""
    return any(
        a["name"] == name and (status is None or a["status"] == status) for a in presence["agents"]
    )


async def test_an_agent_with_a_tab_left_stays_online(
    live: Live, cookie: str, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await create_agent(admin, "bo@a.test", [tenant.slug], name="Bo")
    bo_cookie = await login_cookie(live.url, "bo@a.test")
    async with socket(live.url, "/agent", cookie=cookie) as (_ana, ana_events):
        async with socket(live.url, "/agent", cookie=bo_cookie):
            async with socket(live.url, "/agent", cookie=bo_cookie):
                await ana_events.wait_for("presence", lambda p: is_(p, "Bo", "online"))
            # One of Bo's two tabs closed: the next word on Bo still says online.
            seen = len(ana_events.events["presence"])
            left = await ana_events.wait_for(
                "presence",
                lambda p: (
                    is_(p, "Bo") and any(q is p for q in ana_events.events["presence"][seen:])
                ),
            )
            assert is_(left, "Bo", "online")
        await ana_events.wait_for("presence", lambda p: is_(p, "Bo", "offline"))


async def test_agents_connecting_together_cost_each_agent_a_few_presence_events(
    live: Live, cookie: str, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    """Presence is batched per hotel: 40 sockets connecting at once reach a watching agent as
    at most one event per batching window, not one per connect (n² frames for the room)."""
    from hotelchat.entrypoints.web.sockets import PRESENCE_WINDOW_SECONDS

    await create_agent(admin, "bo@a.test", [tenant.slug], name="Bo")
    bo_cookie = await login_cookie(live.url, "bo@a.test")
    async with socket(live.url, "/agent", cookie=cookie) as (_ana, ana_events):
        await ana_events.wait_for("presence", lambda p: is_(p, "Ana", "online"))
        before = len(ana_events.events["presence"])
        started = asyncio.get_running_loop().time()
        async with contextlib.AsyncExitStack() as tabs:
            await asyncio.gather(
                *(tabs.enter_async_context(socket(live.url, "/agent", cookie=bo_cookie))
                  for _ in range(40))
            )  # fmt: skip
            await ana_events.wait_for("presence", lambda p: is_(p, "Bo", "online"))
            took = asyncio.get_running_loop().time() - started
            await asyncio.sleep(PRESENCE_WINDOW_SECONDS * 2)  # any batch still on its way
            received = len(ana_events.events["presence"]) - before
    assert 1 <= received <= math.ceil(took / PRESENCE_WINDOW_SECONDS) + 2, (received, took)
    assert received < 40
    print(f"40 connects in {took:.2f} s: {received} presence events to the watching agent")


async def test_the_ai_reply_streams_to_the_guest_and_the_agent(
    live: Live, cookie: str, tenant: Tenant, settings: Settings, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next("Breakfast is served from seven until half past ten every day.")
    token, conversation_id = await start_web_chat(live, tenant.slug)
    async with (
        socket(live.url, "/agent", cookie=cookie) as (agent, agent_events),
        socket(live.url, "/guest", token=token) as (_guest, guest_events),
    ):
        assert await agent.call("watch", {"conversation_id": conversation_id},
                                namespace="/agent") == {"ok": True}  # fmt: skip
        asked = await guest_says(live, tenant.slug, token, "when is breakfast?")
        await run_jobs(settings)
        await guest_events.wait_for("ai_done")
        streamed = "".join(d["text"] for d in guest_events.events["ai_delta"])
        assert streamed == "Breakfast is served from seven until half past ten every day."
        assert [d["seq"] for d in guest_events.events["ai_delta"]] == list(
            range(len(guest_events.events["ai_delta"]))
        )
        assert "conversation_id" not in guest_events.events["ai_delta"][0]
        message = await guest_events.wait_for("message", lambda m: m["id"] > asked)
        await agent_events.wait_for("ai_done", lambda d: d["conversation_id"] == conversation_id)
        assert "".join(d["text"] for d in agent_events.events["ai_delta"]) == streamed
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(
            f"{live.url}/chat/{tenant.slug}/messages",
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        history = (await r.json())["messages"]
    assert [m["body"] for m in history][-1] == streamed
    assert history[-1]["id"] == message["id"]


async def test_taking_over_stops_a_reply_being_generated(
    live: Live,
    cookie: str,
    tenant: Tenant,
    admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator,
    twilio_emulator: TwilioEmulator,
) -> None:
    openai_emulator.answer_next(" ".join(f"word{i}" for i in range(60)))
    openai_emulator.fail_next(openai_api.Fault(chunk_delay=0.05))
    token, conversation_id = await start_web_chat(live, tenant.slug)
    message_id = await guest_says(live, tenant.slug, token, "tell me everything")
    deps = live.container.deps
    async with socket(live.url, "/guest", token=token) as (_guest, guest_events):
        job = asyncio.create_task(replies.reply_to_inbound(deps, tenant.hotel_id, message_id))
        await guest_events.wait_for("ai_delta")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            page = await (await http.get(f"{live.url}/dashboard", headers={
                "Cookie": f"hc_session={cookie}"})).text()  # fmt: skip
            csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
            async with http.post(
                f"{live.url}/api/conversations/{conversation_id}/takeover",
                headers={"Cookie": f"hc_session={cookie}", "X-CSRF-Token": csrf},
            ) as r:
                assert r.status == 200
        assert await asyncio.wait_for(job, 10) == "stopped: an agent took over"
        await guest_events.wait_for("ai_aborted")
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0
    assert twilio_emulator.sent() == []


async def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(
    settings: Settings, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    """Behind a proxy every connection comes from the proxy; X-Forwarded-For (from the one
    trusted proxy) tells the clients apart, so one client's guessing never locks out others."""
    import re

    await create_agent(admin, "ana@a.test", [tenant.slug])
    async with live_server(settings.model_copy(update={"trusted_proxy_hops": 1})) as server:

        async def attempt(http: aiohttp.ClientSession, client: str, email: str) -> int:
            async with http.get(server.url + "/login") as page:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
                assert token is not None
                cookie = page.cookies["hc_login"].value
            form = {"email": email, "password": "not it at all", "csrf_token": token.group(1)}
            headers = {"X-Forwarded-For": client, "Cookie": f"hc_login={cookie}"}
            async with http.post(server.url + "/login", data=form, headers=headers) as response:
                return response.status

        async with aiohttp.ClientSession(
            timeout=TIMEOUT, cookie_jar=aiohttp.DummyCookieJar()
        ) as http:
            for n in range(30):
                assert await attempt(http, "203.0.113.7", f"guess{n}@a.test") == 401
            assert await attempt(http, "203.0.113.7", "guess99@a.test") == 429
            assert await attempt(http, "198.51.100.20", "ana@a.test") == 401
