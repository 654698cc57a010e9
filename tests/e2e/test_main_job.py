"""The main job end to end, in real processes: a signed WhatsApp webhook -> stored -> reply job ->
the model called with the matching passage -> Twilio called exactly once -> reply stored with its
MessageSid -> delivery ticks. And a worker killed mid-job, then restarted: exactly one reply."""

from __future__ import annotations

import time

import asyncpg
import pytest

from hotelchat.emulators import openai_api, twilio_api
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import Tenant
from tests.e2e.processes import Spawn, wait_ready, wait_until
from tests.helpers import GUEST, post_webhook

pytestmark = pytest.mark.slow
PARKING = "Parking costs EUR 18 per day in our underground garage."


async def reply_of(admin: asyncpg.Connection, inbound_sid: str) -> asyncpg.Record | None:
    return await admin.fetchrow(
        """SELECT r.* FROM messages m JOIN messages r ON r.in_reply_to = m.id
           WHERE m.provider_sid = $1""",
        inbound_sid,
    )


async def test_a_whatsapp_message_is_answered_end_to_end(
    spawn: Spawn,
    process_env: dict[str, str],
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:
    base = process_env["PUBLIC_BASE_URL"]
    twilio_emulator.callbacks = True
    try:
        spawn("web", ["serve"], process_env)
        spawn("worker", ["worker"], process_env)
        await wait_ready(base)
        sid = await post_webhook(base, tenant, "Is there parking?")
        await wait_until(twilio_emulator.sent, 30, "the reply at Twilio")
        (sent,) = twilio_emulator.sent()
        assert (sent.to, sent.body) == (f"whatsapp:{GUEST}", PARKING)
        (asked,) = openai_emulator.requests
        assert PARKING in asked["messages"][0]["content"]

        async def read() -> bool:
            row = await reply_of(admin, sid)
            return row is not None and row["status"] == "read"

        await wait_until(read, 30, "the delivery ticks to reach read")
        reply = await reply_of(admin, sid)
        assert reply is not None
        assert (reply["provider_sid"], reply["responder"]) == (sent.sid, "openai")
        assert twilio_emulator.requests == 1
        assert list(twilio_emulator.callback_results) == [204, 204, 204]
    finally:
        twilio_emulator.callbacks = False


@pytest.fixture
def fast_restart_env(process_env: dict[str, str]) -> dict[str, str]:
    """A worker whose killed jobs are picked up again quickly: arq re-runs a job once its
    in-progress key expires (job timeout + 10 s), and our leases expire after 5 s."""
    return process_env | {
        "JOB_TIMEOUT_SECONDS": "8",
        "REPLY_LEASE_SECONDS": "5",
        "OPENAI_TIMEOUT_SECONDS": "7",
        "TWILIO_TIMEOUT_SECONDS": "7",
    }


async def wait_for_message_sid(admin: asyncpg.Connection, sid: str, message_sid: str) -> None:
    """Wait (10 s at most) for the reply to inbound `sid` to have Twilio's `message_sid`
    recorded: the emulator holds the message a moment before the worker's `record_sent`."""

    async def recorded() -> bool:
        reply = await reply_of(admin, sid)
        return reply is not None and reply["provider_sid"] == message_sid

    await wait_until(recorded, 10, "the reply's MessageSid to be recorded")


async def test_a_worker_killed_while_the_model_answers_sends_one_reply(
    spawn: Spawn,
    fast_restart_env: dict[str, str],
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:
    base = fast_restart_env["PUBLIC_BASE_URL"]
    openai_emulator.fail_next(openai_api.Fault(delay=5))  # a slow model: the kill lands mid-call
    spawn("web", ["serve"], fast_restart_env)
    first = spawn("worker", ["worker"], fast_restart_env)
    await wait_ready(base)
    sid = await post_webhook(base, tenant, "Is there parking?")
    await wait_until(lambda: openai_emulator.requests, 15, "the model call")
    first.kill()
    spawn("worker", ["worker"], fast_restart_env)
    await wait_until(twilio_emulator.sent, 45, "the reply after the restart")
    (sent,) = twilio_emulator.sent()
    assert sent.body == PARKING
    await wait_for_message_sid(admin, sid, sent.sid)
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 1


async def test_a_worker_killed_after_twilio_took_the_message_does_not_send_it_twice(
    spawn: Spawn,
    fast_restart_env: dict[str, str],
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    base = fast_restart_env["PUBLIC_BASE_URL"]
    # Twilio stores the message, then its answer never arrives before the worker dies.
    twilio_emulator.fail_next(twilio_api.Fault(accept=True, delay=30))
    spawn("web", ["serve"], fast_restart_env)
    first = spawn("worker", ["worker"], fast_restart_env)
    await wait_ready(base)
    sid = await post_webhook(base, tenant, "Is there parking?")
    await wait_until(twilio_emulator.sent, 15, "Twilio to take the message")
    first.kill()
    spawn("worker", ["worker"], fast_restart_env)

    async def recorded() -> bool:
        row = await reply_of(admin, sid)
        return row is not None and row["provider_sid"] is not None

    await wait_until(recorded, 45, "the restarted worker to find the sent message")
    (sent,) = twilio_emulator.sent()
    await wait_for_message_sid(admin, sid, sent.sid)
    assert twilio_emulator.requests == 1, "the message was sent again"


async def test_with_default_settings_a_worker_killed_mid_reply_is_taken_over_within_30_s(
    spawn: Spawn,
    process_env: dict[str, str],
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:
    """Default JOB_TIMEOUT_SECONDS (120) and REPLY_LEASE_SECONDS (15): without renewal the
    dead worker's job would stay marked in progress for 130 s and its reply lease for 15 s from
    the claim; with it both are gone within 15 s of the last renewal before the kill."""
    base = process_env["PUBLIC_BASE_URL"]
    openai_emulator.fail_next(openai_api.Fault(delay=25))  # a slow model: the kill lands mid-call
    spawn("web", ["serve"], process_env)
    first = spawn("worker", ["worker"], process_env)
    await wait_ready(base)
    sid = await post_webhook(base, tenant, "Is there parking?")
    await wait_until(lambda: openai_emulator.requests, 30, "the model call")
    claimed = await admin.fetchval(
        "SELECT reply_claimed_until FROM messages WHERE provider_sid = $1", sid
    )
    renewed = None

    async def lease_renewed() -> bool:
        nonlocal renewed
        renewed = await admin.fetchval(
            "SELECT reply_claimed_until FROM messages WHERE provider_sid = $1", sid
        )
        return renewed is not None and claimed is not None and renewed > claimed

    await wait_until(lease_renewed, 15, "the reply lease to be renewed")
    first.kill()
    killed = time.monotonic()
    spawn("worker", ["worker"], process_env)
    await wait_until(twilio_emulator.sent, 30, "the reply within 30 s of the kill")
    taken_over = time.monotonic() - killed
    (sent,) = twilio_emulator.sent()
    assert sent.body == PARKING
    assert twilio_emulator.requests == 1
    await wait_for_message_sid(admin, sid, sent.sid)
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 1
    print(f"answered {taken_over:.1f} s after the worker was killed")
