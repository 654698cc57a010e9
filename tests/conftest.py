"""The one test pattern: real PostgreSQL and real Redis, loopback emulators for Twilio and OpenAI.

PostgreSQL and Redis are embedded servers started for the session, unless TEST_DATABASE_ADMIN_URL,
TEST_DATABASE_URL and TEST_REDIS_URL name servers to use instead (the tests empty every HotelChat
table and flush the Redis database between tests, hence the separate variable names). The
application connects as the non-owner role, so row-level security is in force in every test.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from hotelchat import bootstrap
from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.embedded import start_postgres, start_redis
from hotelchat.adapters.postgres.migrate import migrate
from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.adapters.queue import create_redis
from hotelchat.config import Settings
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.server import ServerThread
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.entrypoints.worker import create_worker
from hotelchat.logs import configure_logging
from tests.operator.kube import KubeEmulation, run_emulation

# Structured logs go through the standard `logging` module, where `caplog` sees them.
configure_logging("INFO", "json")

# Nothing from the developer's shell may leak into the settings under test.
for _name in [*Settings.model_fields, "hotelchat_state_dir"]:
    os.environ.pop(_name.upper(), None)
for _name in ("TWILIO_EDGE", "TWILIO_REGION", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
    os.environ.pop(_name, None)

TABLES = (
    "kb_entries, messages, conversations, guests, whatsapp_senders, agent_hotels, agents, "
    "hotels, chains"
)
T = TypeVar("T")
PUBLIC_URL = "https://hotelchat.test"
# Media files of every test (the filesystem storage), never under the worktree.
MEDIA_DIR = Path(tempfile.mkdtemp(prefix="hc-media-"))
OPENAI_KEY = "sk-test-" + "k" * 24


@dataclass(frozen=True)
class Backing:
    admin_dsn: str
    app_dsn: str
    redis_url: str
    operator_dsn: str = ""


# Twilio auth tokens are encrypted with this in every test (a Fernet key: base64 of 32 bytes).
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"hotelchat-tests-encryption-key!!").decode()
CIPHER = TokenCipher([ENCRYPTION_KEY])


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to completion on a fresh event loop in another thread: usable from sync
    fixtures even when they are first requested from inside the test session's loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


@pytest.fixture(scope="session")
def backing() -> Iterator[Backing]:
    """PostgreSQL (migrated) and Redis for the whole session."""
    names = ("DATABASE_ADMIN_URL", "DATABASE_URL", "REDIS_URL", "DATABASE_OPERATOR_URL")
    given = [os.environ.get(f"TEST_{n}") for n in names]
    if all(given):
        admin, app, redis_url, operator = (str(v) for v in given)
        run_sync(migrate(admin, app, operator, CIPHER))
        yield Backing(admin, app, redis_url, operator)
        return
    root = Path(tempfile.mkdtemp(prefix="hc-test-"))
    postgres = start_postgres(root / "pg", database="hotelchat_test")
    redis = start_redis(root / "redis", persist=False)
    try:
        run_sync(migrate(postgres.admin_dsn, postgres.app_dsn, postgres.operator_dsn, CIPHER))
        yield Backing(postgres.admin_dsn, postgres.app_dsn, redis.url, postgres.operator_dsn)
    finally:
        redis.stop()
        postgres.stop()


@pytest.fixture(scope="session")
def twilio_emulator() -> Iterator[TwilioEmulator]:
    emulator = TwilioEmulator(callbacks=False)
    server = ServerThread(emulator.app).start()
    emulator.url = server.url
    yield emulator
    server.stop()


@pytest.fixture(scope="session")
def openai_emulator() -> Iterator[OpenAIEmulator]:
    emulator = OpenAIEmulator()
    server = ServerThread(emulator.app).start()
    emulator.url = server.url
    yield emulator
    server.stop()


def make_settings(
    backing: Backing,
    twilio: TwilioEmulator,
    openai: OpenAIEmulator,
    **overrides: object,
) -> Settings:
    """Settings for the system under test; `overrides` by field name."""
    values: dict[str, object] = {
        "database_url": backing.app_dsn,
        "database_admin_url": backing.admin_dsn,
        "redis_url": backing.redis_url,
        "public_base_url": PUBLIC_URL,
        "twilio_api_base_url": twilio.url,
        "openai_api_key": OPENAI_KEY,
        "openai_base_url": openai.url + "/v1",
        "openai_timeout_seconds": 2.0,
        "openai_max_retries": 1,
        "twilio_timeout_seconds": 2.0,
        "secret_key": "s" * 40,
        "encryption_keys": ENCRYPTION_KEY,
        "reply_lease_seconds": 30.0,
        "log_format": "console",
        "media_dir": MEDIA_DIR,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(
    backing: Backing, twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator
) -> Settings:
    return make_settings(backing, twilio_emulator, openai_emulator)


@pytest.fixture(scope="session")
async def admin(backing: Backing) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the schema owner, for arranging and inspecting tests."""
    conn = await asyncpg.connect(backing.admin_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def session_container(settings: Settings) -> AsyncIterator[bootstrap.Container]:
    built = await bootstrap.build(settings)
    yield built
    await built.close()


@pytest.fixture
def container(session_container: bootstrap.Container) -> bootstrap.Container:
    """The session's container, with no routes remembered from earlier tests' hotels."""
    session_container.store.forget_routes()
    return session_container


@pytest.fixture(autouse=True)
def fresh_emulators(twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator) -> None:
    """Every test starts with emulators that remember nothing and have nothing scripted."""
    twilio_emulator.reset()
    openai_emulator.reset()


@pytest.fixture
async def empty_database(admin: asyncpg.Connection, backing: Backing) -> None:
    """Empty HotelChat tables and an empty Redis: autouse in every test folder but unit/."""
    await admin.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    redis = create_redis(backing.redis_url, timeout=5)
    await redis.flushdb()
    await redis.aclose()


@dataclass(frozen=True)
class Tenant:
    """A hotel created for a test, with everything needed to play Twilio at it."""

    hotel_id: int
    slug: str
    phone_number: str
    account_sid: str
    auth_token: str


async def create_tenant(
    admin: asyncpg.Connection,
    slug: str = "hotel-a",
    phone_number: str = "+15550000001",
    *,
    knowledge: tuple[tuple[str, str], ...] = (
        ("Parking", "Parking costs EUR 18 per day in our underground garage."),
        ("Breakfast", "Breakfast is served from 7:00 to 10:30 in the restaurant."),
        ("Wi-Fi", "Free Wi-Fi everywhere; the password is on your key card."),
    ),
) -> Tenant:
    """A chain (shared), a hotel `slug` with WhatsApp number `phone_number` and knowledge."""
    prov = Provisioning(admin, CIPHER)
    await prov.ensure_chain("chain", "Test Chain")
    hotel_id = await prov.create_hotel(
        chain_slug="chain", slug=slug, name=slug.replace("-", " ").title(),
        description="A test hotel.",
    )  # fmt: skip
    account_sid = "AC" + secrets.token_hex(16)
    auth_token = secrets.token_hex(16)
    await prov.add_whatsapp_sender(
        hotel_slug=slug, phone_number=phone_number, account_sid=account_sid, auth_token=auth_token
    )
    for title, body in knowledge:
        await prov.add_knowledge(hotel_slug=slug, title=title, body=body)
    return Tenant(hotel_id, slug, phone_number, account_sid, auth_token)


@pytest.fixture
async def tenant(admin: asyncpg.Connection) -> Tenant:
    return await create_tenant(admin)


@pytest.fixture
async def other_tenant(admin: asyncpg.Connection) -> Tenant:
    return await create_tenant(
        admin,
        "hotel-b",
        "+15550000002",
        knowledge=(("Parking", "Hotel B has free street parking only."),),
    )


async def run_jobs(settings: Settings) -> None:
    """Run a burst-mode arq worker until the queue is empty."""
    redis = create_redis(settings.require_redis_url(), timeout=5)
    worker = create_worker(settings, redis, burst=True)
    try:
        await worker.async_run()
    finally:
        await worker.close()


@pytest.fixture
async def build_container(
    backing: Backing, twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator
) -> AsyncIterator[Callable[..., Awaitable[bootstrap.Container]]]:
    """Build containers with setting overrides; all are closed after the test."""
    built: list[bootstrap.Container] = []

    async def build(**overrides: object) -> bootstrap.Container:
        container = await bootstrap.build(
            make_settings(backing, twilio_emulator, openai_emulator, **overrides)
        )
        built.append(container)
        return container

    yield build
    for container in built:
        await container.close()


AGENT_PASSWORD = "correct horse battery staple"


async def create_agent(
    admin: asyncpg.Connection,
    email: str,
    hotels: list[str],
    *,
    name: str = "Ana",
    password: str = AGENT_PASSWORD,
    chain: str = "chain",
    role: str = "agent",
) -> int:
    """An agent (or, with `role="manager"`, a manager) of `chain` working in `hotels`."""
    return await Provisioning(admin).add_agent(
        chain_slug=chain,
        email=email,
        display_name=name,
        password=password,
        hotel_slugs=hotels,
        role=role,
    )


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulation]:
    """A Kubernetes API emulation of its own for the test, on a loopback port."""
    with run_emulation(tmp_path / "kube") as emulation:
        yield emulation
        errors = emulation.internal_errors()
    assert not errors, f"the Kubernetes emulation failed internally: {errors!r}"
