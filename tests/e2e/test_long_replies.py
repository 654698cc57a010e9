"""A long reply in real processes: the worker is SIGKILLed between two parts of a 3,500-character
reply, a new worker takes over, and the guest gets every part exactly once, in order."""

from __future__ import annotations

import re

import asyncpg
import pytest

from hotelchat.emulators import twilio_api
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import Tenant
from tests.e2e.processes import Spawn, wait_ready, wait_until
from tests.helpers import post_webhook

pytestmark = pytest.mark.slow

LONG = "\n\n".join(
    f"Option {n}: " + "Our concierge can book a table in the old town for you tonight. " * 18
    for n in range(1, 4)
).strip()


@pytest.fixture
def fast_restart_env(process_env: dict[str, str]) -> dict[str, str]:
    """A worker whose killed jobs are picked up again quickly (see test_main_job)."""
    return process_env | {
        "JOB_TIMEOUT_SECONDS": "8",
        "REPLY_LEASE_SECONDS": "5",
        "SWEEPER_MIN_AGE_SECONDS": "1",
        "OPENAI_TIMEOUT_SECONDS": "7",
        "TWILIO_TIMEOUT_SECONDS": "7",
    }


@pytest.mark.parametrize("taken", [False, True], ids=["part-lost", "part-taken"])
async def test_a_worker_killed_between_parts_sends_each_part_once_in_order(
    spawn: Spawn, fast_restart_env: dict[str, str], tenant: Tenant,
    admin: asyncpg.Connection, twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator, taken: bool,
) -> None:  # fmt: skip
    assert 3400 < len(LONG) < 3600
    base = fast_restart_env["PUBLIC_BASE_URL"]
    openai_emulator.answer_next(LONG)
    # Part 1 goes through; Twilio holds part 2's request while the worker is killed, having
    # stored it (taken) or not (lost: it answers an error after the delay, storing nothing, so a
    # request still open when this test ends cannot land in the next one).
    twilio_emulator.fail_next(twilio_api.Fault())
    if taken:
        twilio_emulator.fail_next(twilio_api.Fault(accept=True, delay=30))
    else:
        twilio_emulator.fail_next(twilio_api.Fault(status=500, code=20500, delay=30))
    spawn("web", ["serve"], fast_restart_env)
    first = spawn("worker", ["worker"], fast_restart_env)
    await wait_ready(base)
    await post_webhook(base, tenant, "What can we do tonight?")
    await wait_until(lambda: twilio_emulator.requests >= 2, 30, "part 2's request at Twilio")
    first.kill()
    assert (
        await admin.fetchval("SELECT count(*) FROM message_parts WHERE provider_sid IS NOT NULL")
        == 1
    ), "part 1 was recorded before part 2 went out"
    spawn("worker", ["worker"], fast_restart_env)

    async def all_sent() -> bool:
        return bool(
            await admin.fetchval(
                """SELECT count(*) = 3 AND bool_and(provider_sid IS NOT NULL)
                   FROM message_parts"""
            )
        )

    await wait_until(all_sent, 60, "every part sent after the restart")
    bodies = [m.body for m in twilio_emulator.sent()]
    assert [b.split(":")[0] for b in bodies] == ["Option 1", "Option 2", "Option 3"]
    assert re.sub(r"\s+", "", "".join(bodies)) == re.sub(r"\s+", "", LONG)
    sids = [
        r["provider_sid"]
        for r in await admin.fetch("SELECT provider_sid FROM message_parts ORDER BY part_index")
    ]
    assert sids == [m.sid for m in twilio_emulator.sent()]
    # Part 2 was requested twice only when Twilio never had it; once taken, it was found.
    assert twilio_emulator.requests == (3 if taken else 4)
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 1
