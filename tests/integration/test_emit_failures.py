"""Socket.IO emits that fail (the fan-out Redis stalls, as under load) must not fail what was
already committed: the webhook still answers Twilio 200 with the message stored once, the reply
job still sends exactly one reply, and the failure is logged with the event's name."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client

from hotelchat import bootstrap
from hotelchat.adapters.embedded import EmbeddedRedis, start_redis
from hotelchat.adapters.realtime import EMIT_TIMEOUT, create_emitter
from hotelchat.config import Settings
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.entrypoints.web.app import create_app
from hotelchat.entrypoints.web.context import SOCKETIO
from hotelchat.services import replies
from tests.conftest import Tenant
from tests.helpers import INBOUND_PATH, inbound, receive, signed

pytestmark = pytest.mark.slow


@pytest.fixture
def stalled_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A real redis-server stopped with SIGSTOP: it accepts connections (the kernel does) and
    never answers, as a Redis too busy to keep up looks from a client."""
    redis = start_redis(tmp_path / "stalled", persist=False)
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        yield redis
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
        redis.stop()


def emit_failures(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "realtime.emit_failed"
    ]


async def test_a_webhook_whose_emits_time_out_gets_200_and_is_stored_once(
    settings: Settings,
    stalled_redis: EmbeddedRedis,
    tenant: Tenant,
    admin: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings)
    # The Socket.IO fan-out goes to the stalled Redis; the job queue stays on the working one.
    app.extensions[SOCKETIO].manager.redis_url = stalled_redis.url
    params = inbound(tenant, "Is there parking?")
    async with app.test_app() as test_app:
        client: Client = test_app.test_client()
        for _ in range(2):  # Twilio's retry of the same MessageSid changes nothing
            response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
            assert response.status_code == 200
    assert await admin.fetchval("SELECT count(*) FROM messages") == 1
    failures = emit_failures(caplog)
    assert failures, "the emits did not fail: the test did not take the failure path"
    assert {f["socket_event"] for f in failures} >= {"message", "conversation"}
    assert {f["error_class"] for f in failures} == {"TimeoutError"}


async def test_a_reply_whose_emits_time_out_is_sent_once(
    settings: Settings,
    stalled_redis: EmbeddedRedis,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No model: the knowledge base answers, so the reply makes a handful of emits (each one
    # waits EMIT_TIMEOUT seconds here) rather than one per streamed chunk.
    assert EMIT_TIMEOUT <= 2.0
    no_model = settings.model_copy(update={"openai_api_key": None})
    container = await bootstrap.build(no_model, emitter=create_emitter(stalled_redis.url))
    try:
        message_id = await receive(container, tenant, "Is there parking?")
        assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == (
            "sent"
        )
        again = await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
        assert again == "already answered"
    finally:
        await container.close()
    assert len(twilio_emulator.sent()) == 1
    assert (
        await admin.fetchval("SELECT count(*) FROM messages WHERE in_reply_to = $1", message_id)
        == 1
    )
    assert emit_failures(caplog)
