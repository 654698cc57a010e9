"""A scheduled pre-arrival message in real processes: the worker's journey cron claims it and
sends it through Twilio (the emulator, official SDK); the worker is killed after Twilio took the
message but before we learnt its MessageSid, and a restarted worker neither sends it again nor
claims the reservation a second time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest

from hotelchat.emulators import twilio_api
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import Tenant
from tests.e2e.processes import Spawn, wait_until

pytestmark = pytest.mark.slow
SID = "HX" + "3" * 32
GUEST_PHONE = "+34600999888"


@pytest.fixture
def fast_restart_env(process_env: dict[str, str]) -> dict[str, str]:
    """arq re-runs a killed job once its in-progress key expires (job timeout + 10 s); our send
    lease expires after 5 s."""
    return process_env | {
        "JOB_TIMEOUT_SECONDS": "8",
        "REPLY_LEASE_SECONDS": "5",
        "TWILIO_TIMEOUT_SECONDS": "7",
    }


async def test_a_pre_arrival_message_is_sent_once_across_a_worker_kill(
    spawn: Spawn,
    fast_restart_env: dict[str, str],
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    now = datetime.now(UTC)
    # Due a minute ago (hotel time is UTC): the day before check-in, at this time of day.
    send_at = (now - timedelta(minutes=1)).time() if now.time() >= time(0, 1) else time(0, 0)
    check_in = now.date() + timedelta(days=1)
    twilio_emulator.add_content(tenant.account_sid, sid=SID, friendly_name="pre_arrival",
                                language="en", body="Hi {{1}}, see you tomorrow!")  # fmt: skip
    await admin.execute(
        """INSERT INTO whatsapp_templates (hotel_id, content_sid, friendly_name, language, body,
                                           source)
           VALUES ($1, $2, 'pre_arrival', 'en', 'Hi {{1}}, see you tomorrow!', 'manual')""",
        tenant.hotel_id,
        SID,
    )
    await admin.execute(
        """INSERT INTO journeys (hotel_id, name, template_name, anchor, offset_days, send_time,
                                 variables)
           VALUES ($1, 'pre-arrival', 'pre_arrival', 'check_in', -1, $2, '{"1": "first_name"}')""",
        tenant.hotel_id,
        send_at.replace(microsecond=0),
    )
    await admin.execute(
        """INSERT INTO reservations (hotel_id, code, guest_name, phone_number, check_in, check_out)
           VALUES ($1, 'BK-77', 'Marta Ruiz', $2, $3, $4)""",
        tenant.hotel_id,
        GUEST_PHONE,
        check_in,
        check_in + timedelta(days=2),
    )
    # Twilio stores the message, then its answer never arrives before the worker dies.
    twilio_emulator.fail_next(twilio_api.Fault(accept=True, delay=30))
    first = spawn("worker", ["worker"], fast_restart_env)
    await wait_until(twilio_emulator.sent, 30, "Twilio to take the pre-arrival message")
    first.kill()
    assert await admin.fetchval("SELECT provider_sid FROM messages") is None
    spawn("worker", ["worker"], fast_restart_env)

    async def recorded() -> bool:
        return await admin.fetchval("SELECT provider_sid FROM messages") is not None

    await wait_until(recorded, 60, "the restarted worker to reconcile the sent message")
    (sent,) = twilio_emulator.sent()
    assert sent.body == "Hi Marta, see you tomorrow!" and sent.content_sid == SID
    assert twilio_emulator.requests == 1, "the message was sent again"
    assert await admin.fetchval("SELECT provider_sid FROM messages") == sent.sid
    assert await admin.fetchval("SELECT count(*) FROM messages") == 1
    assert await admin.fetchval("SELECT count(*) FROM journey_sends") == 1
