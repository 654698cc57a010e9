"""WhatsApp templates and the 24-hour window, through the dashboard's API, the worker and the
Twilio emulator (official SDK): a template sent outside the window with its variables, variable
validation, another hotel's templates, the Content API sync, the CLI, and 63016 both ways."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.templates import Template
from hotelchat.emulators.twilio_api import Fault, TwilioEmulator
from hotelchat.entrypoints.web.app import create_app
from hotelchat.entrypoints.web.context import EXTENSION
from hotelchat.services import outbound, templates
from tests.conftest import Backing, Tenant, create_agent, run_jobs
from tests.helpers import GUEST, csrf_of, hotelchat, login, post, receive
from tests.live import live_server

WELCOME_EN = "Hello {{1}}, your room {{2}} is ready. Reply to this message to chat with us."
WELCOME_ES = "Hola {{1}}, su habitación {{2}} está lista."


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
    await create_agent(admin, "ana@a.test", [tenant.slug])
    assert await login(web.client, "ana@a.test") == 303
    return await csrf_of(web.client)


async def stale_conversation(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> int:
    """A WhatsApp conversation whose guest last wrote two days ago (the assistant answered
    nothing: its reply job never ran)."""
    message_id = await receive(container, tenant, "Is there parking?")
    await admin.execute(
        "UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE hotel_id = $1",
        tenant.hotel_id,
    )
    await admin.execute("UPDATE messages SET reply_state = 'skipped' WHERE id = $1", message_id)
    conversation_id: int = await admin.fetchval(
        "SELECT conversation_id FROM messages WHERE id = $1", message_id
    )
    return conversation_id


def register(twilio: TwilioEmulator, tenant: Tenant) -> tuple[str, str]:
    """The welcome template in English and Spanish at the tenant's Twilio account."""
    en = twilio.add_content(
        tenant.account_sid,
        friendly_name="room_ready",
        language="en",
        body=WELCOME_EN,
        variables={"1": "Ana", "2": "101"},
    )
    es = twilio.add_content(
        tenant.account_sid,
        friendly_name="room_ready",
        language="es",
        body=WELCOME_ES,
        variables={"1": "Ana", "2": "101"},
    )
    return en, es


def send(sid: str, **variables: str) -> dict[str, object]:
    return {"content_sid": sid, "variables": variables, "client_id": str(uuid.uuid4())}


async def test_a_template_goes_out_of_the_window_with_its_variables(
    web: Web,
    agent: str,
    tenant: Tenant,
    admin: asyncpg.Connection,
    settings: Settings,
    twilio_emulator: TwilioEmulator,
) -> None:
    en, es = register(twilio_emulator, tenant)
    assert (await templates.sync_hotel(web.container.deps, tenant.hotel_id)).offered == 2
    conversation_id = await stale_conversation(web.container, tenant, admin)
    await admin.execute("UPDATE guests SET language = 'es'")
    twilio_emulator.enforce_window = True
    base = f"/api/conversations/{conversation_id}"

    # Free-form stays refused on the server.
    status, body = await post(
        web.client, base + "/messages", agent, {"body": "Hi!", "client_id": str(uuid.uuid4())}
    )
    assert (status, body["error"]["code"]) == (409, "whatsapp_window_closed")
    conversation = await (await web.client.get(base)).get_json()
    closes = datetime.fromisoformat(conversation["window_closes_at"])
    assert closes < datetime.now(UTC)

    # The dashboard offers both variants and suggests the guest's language.
    offered = await (await web.client.get(base + "/templates")).get_json()
    assert {t["content_sid"] for t in offered["templates"]} == {en, es}
    assert offered["suggested"] == es
    spanish = next(t for t in offered["templates"] if t["content_sid"] == es)
    assert spanish["placeholders"] == ["1", "2"] and spanish["language"] == "es"

    status, body = await post(
        web.client, base + "/templates", agent, send(es, **{"1": "Lucía", "2": "204"})
    )
    assert status == 201, body
    assert body["conversation"]["state"] == "agent"
    await run_jobs(settings)

    (sent,) = twilio_emulator.sent()
    assert sent.content_sid == es
    assert sent.body == "Hola Lucía, su habitación 204 está lista."
    row = await admin.fetchrow(
        """SELECT m.body, m.status, m.provider_sid, m.author, t.content_sid, t.variables
           FROM messages m JOIN outbound_templates t ON t.message_id = m.id"""
    )
    assert row is not None
    assert row["body"] == sent.body  # the transcript keeps the rendered preview
    assert row["provider_sid"] == sent.sid and row["status"] == "queued"
    assert row["content_sid"] == es and row["author"] == "agent"
    assert '"Lucía"' in row["variables"]


async def test_template_variables_are_checked_on_the_server(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    en, _ = register(twilio_emulator, tenant)
    pending = twilio_emulator.add_content(
        tenant.account_sid, friendly_name="promo", language="en", body="Hi {{1}}", status="pending"
    )
    await templates.sync_hotel(web.container.deps, tenant.hotel_id)
    conversation_id = await stale_conversation(web.container, tenant, admin)
    path = f"/api/conversations/{conversation_id}/templates"
    cases: list[tuple[dict[str, object], int, str, str]] = [
        (send(en, **{"1": "Ana"}), 400, "invalid_variables", "{{2}} is missing"),
        (send(en, **{"1": "Ana\nX", "2": "1"}), 400, "invalid_variables", "newline"),
        (send(en, **{"1": "Ana\tX", "2": "1"}), 400, "invalid_variables", "tab"),
        (send(en, **{"1": "A      B", "2": "1"}), 400, "invalid_variables", "four spaces"),
        (send(en, **{"1": "A" * 201, "2": "1"}), 400, "invalid_variables", "longer than 200"),
        (send(en, **{"1": "A", "2": "1", "9": "x"}), 400, "invalid_variables", "unknown"),
        (send("HX123", **{"1": "A"}), 400, "invalid_input", "content_sid"),
        (send("HX" + "0" * 32, **{"1": "A"}), 404, "not_found", "no such template"),
        (send(pending, **{"1": "A"}), 409, "template_not_approved", "not approved"),
        (
            {"content_sid": en, "variables": {"1": 5}, "client_id": str(uuid.uuid4())},
            400,
            "invalid_input",
            "variables",
        ),
        ({"content_sid": en, "variables": {}, "client_id": "x"}, 400, "invalid_input", "client_id"),
        (
            {"content_sid": en, "variables": {}, "client_id": str(uuid.uuid4()), "body": "x"},
            400,
            "invalid_input",
            "body",
        ),
    ]
    for request, status, code, words in cases:
        got, body = await post(web.client, path, agent, request)
        assert (got, body["error"]["code"]) == (status, code), request
        assert words in body["error"]["message"], body
    # Without the CSRF token nothing happens either.
    got, _ = await post(web.client, path, None, send(en, **{"1": "A", "2": "1"}))
    assert got == 403
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0
    # The unapproved template is never offered.
    offered = await (await web.client.get(path)).get_json()
    assert pending not in {t["content_sid"] for t in offered["templates"]}


async def test_a_retried_send_is_stored_once(
    web: Web, agent: str, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    en, _ = register(twilio_emulator, tenant)
    await templates.sync_hotel(web.container.deps, tenant.hotel_id)
    conversation_id = await stale_conversation(web.container, tenant, admin)
    request = send(en, **{"1": "Ana", "2": "101"})
    path = f"/api/conversations/{conversation_id}/templates"
    first, one = await post(web.client, path, agent, request)
    again, two = await post(web.client, path, agent, request)
    assert (first, again) == (201, 200) and one["id"] == two["id"]


async def test_another_hotels_templates_and_conversations_are_not_found(
    web: Web,
    agent: str,
    tenant: Tenant,
    other_tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    register(twilio_emulator, tenant)
    theirs, _ = register(twilio_emulator, other_tenant)
    await templates.sync_hotel(web.container.deps, tenant.hotel_id)
    await templates.sync_hotel(web.container.deps, other_tenant.hotel_id)
    ours = await stale_conversation(web.container, tenant, admin)
    their_conversation = await stale_conversation(web.container, other_tenant, admin)
    status, body = await post(
        web.client,
        f"/api/conversations/{ours}/templates",
        agent,
        send(theirs, **{"1": "A", "2": "1"}),
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    for_theirs = f"/api/conversations/{their_conversation}/templates"
    status, _ = await post(web.client, for_theirs, agent, send(theirs, **{"1": "A", "2": "1"}))
    assert status == 404
    assert (await web.client.get(for_theirs)).status_code == 404
    # The emulator, like Twilio, refuses another account's ContentSid (21655).
    plan_sid = twilio_emulator.add_content(
        other_tenant.account_sid, friendly_name="x", language="en", body="x"
    )
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{twilio_emulator.url}/2010-04-01/Accounts/{tenant.account_sid}/Messages.json",
            data={
                "To": f"whatsapp:{GUEST}",
                "From": f"whatsapp:{tenant.phone_number}",
                "ContentSid": plan_sid,
            },
            headers={
                "Authorization": aiohttp.encode_basic_auth(tenant.account_sid, tenant.auth_token)
            },
        )
        assert response.status == 400
        assert (await response.json())["code"] == 21655
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0


async def test_the_content_api_sync_adds_changes_removes_and_keeps_unapproved_unoffered(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator
) -> None:
    deps = container.deps
    assert deps.templates is not None
    # More than one page of the Content API (the adapter asks for 100 at a time).
    sids = [
        twilio_emulator.add_content(
            tenant.account_sid,
            friendly_name=f"t{i}",
            language="en",
            body=f"Template {i} for {{{{1}}}}",
        )
        for i in range(105)
    ]
    pending = twilio_emulator.add_content(
        tenant.account_sid, friendly_name="promo", language="en", body="Hi {{1}}", status="rejected"
    )
    manual = Template("HX" + "f" * 32, "by_hand", "en", "Hi {{1}}")
    await deps.templates.save_template(tenant.hotel_id, manual)
    first = await templates.sync_hotel(deps, tenant.hotel_id)
    assert (first.added, first.changed, first.removed, first.offered) == (106, 0, 0, 105)
    assert twilio_emulator.content_requests == 2  # two pages

    twilio_emulator.add_content(
        tenant.account_sid, sid=sids[0], friendly_name="t0", language="en", body="Changed for {{1}}"
    )
    twilio_emulator.remove_content(sids[1])
    twilio_emulator.add_content(
        tenant.account_sid,
        sid=pending,
        friendly_name="promo",
        language="en",
        body="Hi {{1}}",
        status="approved",
    )
    second = await templates.sync_hotel(deps, tenant.hotel_id)
    assert (second.added, second.changed, second.removed) == (0, 2, 1)
    stored = {t.content_sid: t for t in await deps.templates.templates(tenant.hotel_id)}
    assert stored[sids[0]].body == "Changed for {{1}}"
    assert sids[1] not in stored
    assert stored[pending].approved
    assert stored[manual.content_sid].source == "manual"  # hand-made templates stay
    again = await templates.sync_hotel(deps, tenant.hotel_id)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)


async def test_the_sync_cron_syncs_every_hotel_with_its_own_account(
    container: Container, tenant: Tenant, other_tenant: Tenant, twilio_emulator: TwilioEmulator
) -> None:
    twilio_emulator.add_content(
        other_tenant.account_sid, friendly_name="ok", language="en", body="Hi"
    )
    assert await templates.sync_all(container.deps) == 2
    assert container.deps.templates is not None
    assert await container.deps.templates.templates(tenant.hotel_id) == []
    assert container.deps.templates is not None
    assert len(await container.deps.templates.templates(other_tenant.hotel_id)) == 1


def test_the_cli_adds_lists_and_removes_templates(backing: Backing, tenant: Tenant) -> None:
    sid = "HX" + "1" * 32
    added = hotelchat(
        backing,
        "s" * 40,
        "templates",
        "add",
        "--hotel",
        tenant.slug,
        "--sid",
        sid,
        "--name",
        "checkout",
        "--language",
        "en",
        "--body",
        "Bye {{1}}, check-out is at {{2}}.",
        "--var",
        "1=Ana",
        "--var",
        "2=11:00",
    )
    assert added.returncode == 0, added.stderr
    listed = hotelchat(backing, "s" * 40, "templates", "list", "--hotel", tenant.slug)
    assert f"{sid}\tcheckout\ten\tapproved\tmanual\tBye {{{{1}}}}" in listed.stdout
    bad = hotelchat(
        backing,
        "s" * 40,
        "templates",
        "add",
        "--hotel",
        tenant.slug,
        "--sid",
        sid,
        "--name",
        "x",
        "--language",
        "en",
        "--body",
        "Hi {{}}",
    )
    assert bad.returncode == 1 and "malformed placeholder" in bad.stderr
    unknown = hotelchat(backing, "s" * 40, "templates", "list", "--hotel", "no-such-hotel")
    assert unknown.returncode == 1 and "no hotel 'no-such-hotel'" in unknown.stderr
    removed = hotelchat(
        backing, "s" * 40, "templates", "remove", "--hotel", tenant.slug, "--sid", sid
    )
    assert removed.returncode == 0, removed.stderr
    again = hotelchat(
        backing, "s" * 40, "templates", "remove", "--hotel", tenant.slug, "--sid", sid
    )
    assert again.returncode == 1 and "no template" in again.stderr


async def window_notice(admin: asyncpg.Connection) -> asyncpg.Record | None:
    return await admin.fetchrow(
        """SELECT m.body, c.window_closed_at, c.handoff_reason, c.state FROM messages m
           JOIN conversations c ON c.id = m.conversation_id
           WHERE m.direction = 'internal' AND m.author = 'system'"""
    )


async def test_a_synchronous_63016_closes_the_window_and_says_to_use_a_template(
    web: Web,
    agent: str,
    tenant: Tenant,
    admin: asyncpg.Connection,
    settings: Settings,
    twilio_emulator: TwilioEmulator,
) -> None:
    # Our clock says the window is open, Twilio's does not (the guest never wrote through it).
    en, _ = register(twilio_emulator, tenant)
    await templates.sync_hotel(web.container.deps, tenant.hotel_id)
    twilio_emulator.enforce_window = True
    message_id = await receive(web.container, tenant, "Is there parking?")
    conversation_id = await admin.fetchval(
        "SELECT conversation_id FROM messages WHERE id = $1", message_id
    )
    base = f"/api/conversations/{conversation_id}"
    status, body = await post(
        web.client,
        base + "/messages",
        agent,
        {"body": "Yes, EUR 18 a day.", "client_id": str(uuid.uuid4())},
    )
    assert status == 201, body
    await run_jobs(settings)
    assert twilio_emulator.sent() == []
    failed = await admin.fetchrow(
        "SELECT status, error_code FROM messages WHERE id = $1", body["id"]
    )
    assert dict(failed or {}) == {"status": "failed", "error_code": "twilio_63016"}
    notice = await window_notice(admin)
    assert notice is not None and "template" in notice["body"]
    assert notice["window_closed_at"] is not None
    assert notice["state"] == "agent"  # the agent keeps it; the notice tells them what to do
    timeline = await (await web.client.get(base + "/messages")).get_json()
    assert any(
        m["author"] == "system" and m["direction"] == "internal" for m in timeline["messages"]
    )
    conversation = await (await web.client.get(base)).get_json()
    assert conversation["window_closes_at"] is None
    status, body = await post(
        web.client, base + "/messages", agent, {"body": "Hello?", "client_id": str(uuid.uuid4())}
    )
    assert (status, body["error"]["code"]) == (409, "whatsapp_window_closed")
    # A template still goes out.
    status, _ = await post(
        web.client, base + "/templates", agent, send(en, **{"1": "Ana", "2": "101"})
    )
    assert status == 201
    await run_jobs(settings)
    assert len(twilio_emulator.sent()) == 1
    # The guest writing again opens the window again.
    await receive(web.container, tenant, "Thanks!")
    conversation = await (await web.client.get(base)).get_json()
    assert conversation["window_closes_at"] is not None


async def test_a_failed_callback_with_63016_closes_the_window(
    settings: Settings, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    async with live_server(settings, own_url=True) as live:
        message_id = await receive(live.container, tenant, "Is there parking?")
        await admin.execute("UPDATE messages SET reply_state = 'skipped'")
        conversation_id = await admin.fetchval(
            "SELECT conversation_id FROM messages WHERE id = $1", message_id
        )
        reply_id = await admin.fetchval(
            """INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status)
               VALUES ($1, $2, 'outbound', 'ai', 'Parking is EUR 18.', 'pending') RETURNING id""",
            tenant.hotel_id,
            conversation_id,
        )
        twilio_emulator.fail_next(Fault(async_error=63016))
        assert (
            await outbound.send_outbound(live.container.deps, tenant.hotel_id, reply_id) == "sent"
        )
        for _ in range(50):
            if await window_notice(admin) is not None:
                break
            await asyncio.sleep(0.2)
    notice = await window_notice(admin)
    assert notice is not None, "the failed callback did not close the window"
    assert notice["handoff_reason"] == templates.WINDOW_CLOSED_REASON
    assert notice["state"] == "needs_human"
    row = await admin.fetchrow("SELECT status, error_code FROM messages WHERE id = $1", reply_id)
    assert dict(row or {}) == {"status": "failed", "error_code": "twilio_63016"}
    assert list(twilio_emulator.callback_results) == [204]


async def test_a_template_send_that_timed_out_is_reconciled_not_resent(
    web: Web,
    agent: str,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    en, _ = register(twilio_emulator, tenant)
    await templates.sync_hotel(web.container.deps, tenant.hotel_id)
    conversation_id = await stale_conversation(web.container, tenant, admin)
    status, body = await post(
        web.client,
        f"/api/conversations/{conversation_id}/templates",
        agent,
        send(en, **{"1": "Ana", "2": "101"}),
    )
    assert status == 201
    # Twilio takes the message, but its answer comes after our 2-second timeout.
    twilio_emulator.fail_next(Fault(accept=True, delay=3))
    deps = web.container.deps
    with pytest.raises(Exception, match="provider failed"):
        await outbound.send_outbound(deps, tenant.hotel_id, body["id"])
    await admin.execute("UPDATE messages SET send_claimed_until = NULL WHERE id = $1", body["id"])
    assert await outbound.send_outbound(deps, tenant.hotel_id, body["id"]) == "reconciled"
    (sent,) = twilio_emulator.sent()
    assert sent.content_sid == en
    assert (
        await admin.fetchval("SELECT provider_sid FROM messages WHERE id = $1", body["id"])
        == sent.sid
    )


async def test_managers_see_their_hotels_journeys_and_agents_do_not(
    web: Web, agent: str, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    from datetime import time

    from hotelchat.domain.templates import Journey

    store = web.container.deps.templates
    assert store is not None
    ours = Journey(0, "pre-arrival", "pre_arrival", "check_in", -1, time(10), time(22), time(8))
    await store.add_journey(tenant.hotel_id, ours)
    await store.add_journey(
        other_tenant.hotel_id, Journey(0, "theirs", "x", "check_out", 1, time(9))
    )
    response = await web.client.get("/api/journeys")
    assert response.status_code == 403
    await admin.execute("UPDATE agent_hotels SET role = 'manager'")
    response = await web.client.get("/api/journeys")
    assert response.status_code == 200
    (only,) = (await response.get_json())["journeys"]
    assert only["name"] == "pre-arrival" and only["quiet_hours"] == "22:00-08:00"
    assert only["send_time"] == "10:00" and only["offset_days"] == -1
