"""Long replies and Twilio's limits: a reply over 1,600 characters goes out as ordered parts,
each sent once even when a send fails between parts; each part has its own delivery ticks; a
429 / 20429 from Twilio is retried with backoff through the official client; sends are paced per
sender number."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client
from twilio.base.exceptions import TwilioRestException

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.errors import SendError, TemporaryFailure
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import Fault, TwilioEmulator
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import outbound, replies
from tests.conftest import Tenant, create_agent
from tests.helpers import STATUS_PATH, csrf_of, login, post, receive, signed
from tests.integration.test_status_callbacks import callback

Build = Callable[..., Awaitable[Container]]

# About 3,500 characters in three paragraphs, as a model writes a long answer.
LONG = (
    "\n\n".join(
        f"Option {n}: " + "Our concierge can book a table in the old town for you tonight. " * 18
        for n in range(1, 4)
    )
    .replace(" \n", "\n")
    .strip()
)


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def long_reply(
    container: Container, tenant: Tenant, openai_emulator: OpenAIEmulator
) -> tuple[int, str]:
    """The assistant's long reply to a question: (reply id, what the reply job returned)."""
    openai_emulator.answer_next(LONG)
    message_id = await receive(container, tenant, "What can we do tonight?")
    try:
        outcome = await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    except TemporaryFailure:
        outcome = "retry"
    return message_id, outcome


async def reply_id_of(admin: asyncpg.Connection, message_id: int) -> int:
    found = await admin.fetchval("SELECT id FROM messages WHERE in_reply_to = $1", message_id)
    assert found is not None
    return int(found)


async def parts_of(admin: asyncpg.Connection, reply_id: int) -> list[asyncpg.Record]:
    return list(
        await admin.fetch(
            "SELECT * FROM message_parts WHERE message_id = $1 ORDER BY part_index", reply_id
        )
    )


async def test_a_3500_character_reply_goes_out_as_ordered_parts(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator, twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    assert 3400 < len(LONG) < 3600
    message_id, outcome = await long_reply(container, tenant, openai_emulator)
    assert outcome == "sent in 3 parts"
    bodies = [m.body for m in twilio_emulator.sent()]
    assert [b.split(":")[0] for b in bodies] == ["Option 1", "Option 2", "Option 3"]
    assert all(len(b) <= 1600 for b in bodies)
    assert squeeze("".join(bodies)) == squeeze(LONG)
    reply_id = await reply_id_of(admin, message_id)
    parts = await parts_of(admin, reply_id)
    assert [p["provider_sid"] for p in parts] == [m.sid for m in twilio_emulator.sent()]
    assert [p["status"] for p in parts] == ["queued"] * 3
    row = await admin.fetchrow("SELECT status, body FROM messages WHERE id = $1", reply_id)
    assert row is not None and (row["status"], row["body"]) == ("queued", LONG)
    # A re-run job finds the message sent and sends nothing.
    assert await outbound.send_outbound(container.deps, tenant.hotel_id, reply_id) == (
        "already queued"
    )
    assert twilio_emulator.requests == 3


async def test_a_failure_between_parts_resends_only_the_unsent_ones_in_order(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator, twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    twilio_emulator.fail_next(Fault())  # part 1 goes through
    twilio_emulator.fail_next(Fault(status=503, code=20503))  # part 2 fails: retry later
    message_id, outcome = await long_reply(container, tenant, openai_emulator)
    assert outcome == "retry"
    reply_id = await reply_id_of(admin, message_id)
    parts = await parts_of(admin, reply_id)
    assert [p["provider_sid"] is not None for p in parts] == [True, False, False]
    assert [p["send_attempted_at"] is None for p in parts] == [False, True, True]
    await admin.execute("UPDATE messages SET send_claimed_until = NULL WHERE id = $1", reply_id)
    assert await outbound.send_outbound(container.deps, tenant.hotel_id, reply_id) == (
        "sent in 3 parts"
    )
    bodies = [m.body for m in twilio_emulator.sent()]
    assert [b.split(":")[0] for b in bodies] == ["Option 1", "Option 2", "Option 3"]
    assert twilio_emulator.requests == 4  # 3 parts + the failed attempt


async def test_a_part_twilio_took_without_answering_is_found_not_sent_again(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator, twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(twilio_timeout_seconds=0.5)
    twilio_emulator.fail_next(Fault())
    twilio_emulator.fail_next(Fault(accept=True, delay=2))  # part 2 taken, then a timeout
    message_id, outcome = await long_reply(container, tenant, openai_emulator)
    assert outcome == "retry"
    reply_id = await reply_id_of(admin, message_id)
    await admin.execute("UPDATE messages SET send_claimed_until = NULL WHERE id = $1", reply_id)
    assert await outbound.send_outbound(container.deps, tenant.hotel_id, reply_id) == (
        "reconciled in 3 parts"
    )
    bodies = [m.body for m in twilio_emulator.sent()]
    assert [b.split(":")[0] for b in bodies] == ["Option 1", "Option 2", "Option 3"]
    parts = await parts_of(admin, reply_id)
    assert [p["provider_sid"] for p in parts] == [m.sid for m in twilio_emulator.sent()]
    assert twilio_emulator.requests == 3


async def tick(client: Client, signer: Tenant, params: dict[str, str], query: str) -> int:
    path = STATUS_PATH + query
    response = await client.post(path, form=params, headers=signed(signer, params, path))
    return response.status_code


async def test_each_part_has_its_own_ticks_and_the_reply_shows_the_least_advanced(
    client: Client, container: Container, tenant: Tenant, other_tenant: Tenant,
    admin: asyncpg.Connection, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    message_id, _ = await long_reply(container, tenant, openai_emulator)
    reply_id = await reply_id_of(admin, message_id)
    sids = [p["provider_sid"] for p in await parts_of(admin, reply_id)]

    async def state() -> tuple[str, list[str]]:
        status = await admin.fetchval("SELECT status FROM messages WHERE id = $1", reply_id)
        return status, [p["status"] for p in await parts_of(admin, reply_id)]

    for index in (0, 1):
        query = f"?message_id={reply_id}&part={index}"
        assert await tick(client, tenant, callback(tenant, sids[index], "delivered"), query) == 204
    assert await state() == ("queued", ["delivered", "delivered", "queued"])
    query = f"?message_id={reply_id}&part=2"
    assert await tick(client, tenant, callback(tenant, sids[2], "read"), query) == 204
    assert await state() == ("delivered", ["delivered", "delivered", "read"])
    # Repeats and late statuses move nothing back.
    assert await tick(client, tenant, callback(tenant, sids[2], "sent"), query) == 204
    assert await state() == ("delivered", ["delivered", "delivered", "read"])
    # Another part's MessageSid, another hotel's signature, malformed parts: nothing changes.
    assert await tick(client, tenant, callback(tenant, sids[0], "read"), query) == 204
    params = callback(other_tenant, sids[0], "read")
    assert await tick(client, other_tenant, params, f"?message_id={reply_id}&part=0") == 204
    for bad in (f"?message_id={reply_id}&part=x", f"?message_id={reply_id}&part=123",
                "?part=0", f"?message_id={reply_id}&part=-1"):  # fmt: skip
        assert await tick(client, tenant, callback(tenant, sids[0], "read"), bad) == 400
    forged = callback(tenant, sids[0], "read")
    path = STATUS_PATH + f"?message_id={reply_id}&part=0"
    response = await client.post(path, form=forged, headers={"X-Twilio-Signature": "x" * 28})
    assert response.status_code == 403
    assert await state() == ("delivered", ["delivered", "delivered", "read"])


async def test_a_failed_part_fails_the_reply_and_hands_the_conversation_to_staff(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    message_id, _ = await long_reply(container, tenant, openai_emulator)
    reply_id = await reply_id_of(admin, message_id)
    sids = [p["provider_sid"] for p in await parts_of(admin, reply_id)]
    params = callback(tenant, sids[1], "undelivered", ErrorCode="63024")
    assert await tick(client, tenant, params, f"?message_id={reply_id}&part=1") == 204
    row = await admin.fetchrow(
        """SELECT m.status, m.error_code, c.state FROM messages m
           JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1""",
        reply_id,
    )
    assert row is not None
    assert (row["status"], row["error_code"], row["state"]) == (
        "undelivered", "twilio_63024", "needs_human"
    )  # fmt: skip


async def test_an_agents_long_reply_is_split_too_and_the_api_shows_its_parts(
    client: Client, settings: Settings, container: Container, tenant: Tenant,
    admin: asyncpg.Connection, twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    from tests.conftest import run_jobs

    await receive(container, tenant, "Hello")
    await create_agent(admin, "ana@a.test", [tenant.slug])
    assert await login(client, "ana@a.test") == 303
    csrf = await csrf_of(client)
    conversation_id = await admin.fetchval("SELECT id FROM conversations")
    body = {"body": LONG, "client_id": str(uuid.uuid4())}
    status, _ = await post(client, f"/api/conversations/{conversation_id}/messages", csrf, body)
    assert status in (200, 201)
    await run_jobs(settings)
    bodies = [m.body for m in twilio_emulator.sent() if m.body.startswith("Option")]
    assert [b.split(":")[0] for b in bodies] == ["Option 1", "Option 2", "Option 3"]
    response = await client.get(f"/api/conversations/{conversation_id}/messages")
    listed = (await response.get_json())["messages"]
    (agent_reply,) = [m for m in listed if m["author"] == "agent"]
    assert agent_reply["body"] == LONG
    assert agent_reply["parts"] == ["queued", "queued", "queued"]


async def test_twilio_429_is_retried_with_backoff_through_the_official_client(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(
        openai_api_key=None, twilio_rate_limit_retries=3, twilio_rate_limit_backoff_seconds=0.05
    )
    twilio_emulator.fail_next(Fault(status=429, code=20429), times=2)
    message_id = await receive(container, tenant, "Is there parking?")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    assert twilio_emulator.requests == 3
    assert len(twilio_emulator.sent()) == 1


async def test_429s_past_the_retries_leave_the_send_to_the_job_surely_unsent(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(
        openai_api_key=None, twilio_rate_limit_retries=2, twilio_rate_limit_backoff_seconds=0.05
    )
    twilio_emulator.fail_next(Fault(status=429, code=20429), times=3)
    message_id = await receive(container, tenant, "Is there parking?")
    with pytest.raises(TemporaryFailure):
        await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert twilio_emulator.requests == 3  # one try and two retries, then the job's turn
    reply_id = await reply_id_of(admin, message_id)
    row = await admin.fetchrow(
        "SELECT status, send_attempted_at FROM messages WHERE id = $1", reply_id
    )
    assert row is not None and row["status"] == "pending"
    assert row["send_attempted_at"] is None  # a 429 was never processed: no look-up needed
    assert await outbound.send_outbound(container.deps, tenant.hotel_id, reply_id) == "sent"
    assert len(twilio_emulator.sent()) == 1


async def test_sends_are_paced_per_sender_number(
    build_container: Build, tenant: Tenant, twilio_emulator: TwilioEmulator
) -> None:
    container = await build_container(openai_api_key=None, whatsapp_sends_per_second=4)
    guests = [f"+1555100{n:04d}" for n in range(10)]
    ids = [await receive(container, tenant, "Is there parking?", guest=g) for g in guests]
    await asyncio.gather(
        *(replies.reply_to_inbound(container.deps, tenant.hotel_id, i) for i in ids)
    )
    times = sorted(twilio_emulator.create_times)
    assert len(times) == 10
    # No second holds more than 4 sends: any 5 in a row span at least a second (a little less
    # is the gap between Redis's clock and this process's).
    assert all(times[i + 4] - times[i] >= 0.9 for i in range(len(times) - 4))


async def test_the_emulators_429_reaches_us_as_twilios_error_through_the_official_client(
    build_container: Build, tenant: Tenant, twilio_emulator: TwilioEmulator
) -> None:
    container = await build_container(openai_api_key=None, twilio_rate_limit_retries=0)
    (route,) = await container.store.whatsapp_senders(tenant.hotel_id)
    twilio_emulator.fail_next(Fault(status=429, code=20429))
    with pytest.raises(SendError) as caught:
        await container.deps.whatsapp.send(
            route, to_number="+15551234567", body="Hello", status_callback=None
        )
    error = caught.value
    assert (error.status, error.provider_code, error.retryable, error.maybe_sent) == (
        429, 20429, True, False
    )  # fmt: skip
    assert isinstance(error.__cause__, TwilioRestException)
    assert "Too Many Requests" in str(error.__cause__)
