"""The main job end to end with every HotelChat process started from the image, configured by
environment variables alone, as its user on a read-only root: `hotelchat migrate` makes the schema
of an empty database, `hotelchat worker` embeds the knowledge base with the bundled e5 model,
`hotelchat serve` takes a signed Twilio webhook, and the worker answers from the knowledge base
(no OpenAI key) with exactly one message through the Twilio emulator on the host."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from hotelchat.adapters.embedded import free_port
from hotelchat.adapters.embeddings import LocalE5Embeddings
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import ENCRYPTION_KEY, Backing, create_tenant
from tests.e2e.processes import wait_ready, wait_until
from tests.helpers import GUEST, post_webhook
from tests.image.conftest import StartInImage, image_timeout
from tests.image.runner import ImageConfig, postgres_for_image

pytestmark = [pytest.mark.slow, image_timeout(240)]
PARKING = "Parking costs EUR 18 per day in our underground garage."


@dataclass(frozen=True)
class Database:
    """An empty database of its own on the session's server, as the host reaches it."""

    admin_dsn: str
    app_dsn: str


def in_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@pytest.fixture
async def database(backing: Backing, empty_database: None) -> AsyncIterator[Database]:
    """A new database, dropped after the test (and an empty Redis): the image's `migrate` has
    to build its whole schema."""
    name = f"hotelchat_image_{secrets.token_hex(4)}"
    server = await asyncpg.connect(backing.admin_dsn)
    try:
        await server.execute(f'CREATE DATABASE "{name}"')
        yield Database(in_database(backing.admin_dsn, name), in_database(backing.app_dsn, name))
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


async def test_a_whatsapp_message_is_answered_by_processes_from_the_image(
    in_image: StartInImage,
    config: ImageConfig,
    database: Database,
    backing: Backing,
    twilio_emulator: TwilioEmulator,
) -> None:
    admin_dsn, volumes = postgres_for_image(database.admin_dsn)
    app_dsn, _ = postgres_for_image(database.app_dsn)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": app_dsn,
        "REDIS_URL": backing.redis_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ENCRYPTION_KEYS": ENCRYPTION_KEY,  # the key create_tenant encrypts tokens with
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_BASE_URL": base,
        "TWILIO_API_BASE_URL": twilio_emulator.url,
        "WORKER_METRICS_PORT": "0",
        "LOG_FORMAT": "json",
    }

    migrate = in_image(
        "migrate", config.argv(args=["migrate"]), env | {"DATABASE_ADMIN_URL": admin_dsn},
        volumes=volumes,
    )  # fmt: skip
    assert migrate.wait(120) == 0, migrate.output()
    assert "database at revision" in migrate.output()

    admin = await asyncpg.connect(database.admin_dsn)
    try:
        tenant = await create_tenant(admin)
        # Two Hypercorn workers share their metrics in the folder the chart names, in /tmp.
        web_env = env | {"WEB_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus"}
        web = in_image("web", config.argv(args=["serve"]), web_env, volumes=volumes)
        worker = in_image("worker", config.argv(args=["worker"]), env, volumes=volumes)

        async def embedded() -> bool:
            done: int = await admin.fetchval(
                "SELECT count(*) FROM kb_entries WHERE embedding_model = $1",
                LocalE5Embeddings.model,
            )
            return done == 3

        await wait_until(embedded, 120, "the worker in the image to embed the knowledge base")
        await wait_ready(base, 60)
        sid = await post_webhook(base, tenant, "Is there parking?")
        await wait_until(twilio_emulator.sent, 60, "the reply at the Twilio emulator")

        async def recorded() -> asyncpg.Record | None:
            row: asyncpg.Record | None = await admin.fetchrow(
                """SELECT r.* FROM messages m JOIN messages r ON r.in_reply_to = m.id
                   WHERE m.provider_sid = $1 AND r.provider_sid IS NOT NULL""",
                sid,
            )
            return row

        await wait_until(recorded, 30, "the reply stored with its MessageSid")
        (sent,) = twilio_emulator.sent()
        assert (sent.to, sent.body) == (f"whatsapp:{GUEST}", PARKING)
        reply = await recorded()
        assert reply is not None
        assert (reply["provider_sid"], reply["responder"]) == (sent.sid, "knowledge_base")
        outbound = await admin.fetchval(
            "SELECT count(*) FROM messages WHERE direction = 'outbound'"
        )
        assert (outbound, twilio_emulator.requests) == (1, 1)
        # Whichever web worker took the webhook, /metrics counts it (the shared folder works).
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(base + "/metrics") as response,
        ):
            assert response.status == 200
            exposition = await response.text()
        assert 'hotelchat_inbound_messages_total{channel="whatsapp",hotel="hotel-a"} 1.0' in (
            exposition
        )
    finally:
        await admin.close()
    # SIGTERM, as the kubelet sends it: both stop cleanly.
    assert web.stop() == 0, web.output()
    assert worker.stop() == 0, worker.output()
