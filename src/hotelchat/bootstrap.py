"""Wires adapters into services: the only place that decides which PostgreSQL, Redis, model and
messaging provider a process talks to. Web processes and workers both start here."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from hotelchat.adapters.answer_cache import RedisAnswerCache
from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.embeddings import LocalE5Embeddings, OpenAIEmbeddings
from hotelchat.adapters.kubernetes import KubernetesCluster
from hotelchat.adapters.language import FastTextLanguages
from hotelchat.adapters.openai_chat import OpenAIChatModel, create_client
from hotelchat.adapters.pacing import RedisSendPacer
from hotelchat.adapters.postgres.consents import PostgresConsents
from hotelchat.adapters.postgres.database import Database, PoolConfig, create_pool
from hotelchat.adapters.postgres.hotels import PostgresHotels
from hotelchat.adapters.postgres.inbox import PostgresAgents, PostgresInbox
from hotelchat.adapters.postgres.knowledge import PostgresKnowledge
from hotelchat.adapters.postgres.media import PostgresMedia
from hotelchat.adapters.postgres.migrate import verify_app_role, verify_operator_role
from hotelchat.adapters.postgres.parts import PostgresMessageParts
from hotelchat.adapters.postgres.provisioning import ProvisioningPool
from hotelchat.adapters.postgres.reservations import PostgresReservations
from hotelchat.adapters.postgres.service_requests import PostgresServiceRequests
from hotelchat.adapters.postgres.store import PostgresStore
from hotelchat.adapters.postgres.templates import PostgresTemplates
from hotelchat.adapters.queue import ArqJobQueue, create_redis
from hotelchat.adapters.realtime import SocketIOEvents, create_emitter
from hotelchat.adapters.resilience import RedisCircuitBreaker, RedisConcurrencyLimit
from hotelchat.adapters.security import (
    Argon2Passwords,
    RedisRateLimiter,
    RedisStopSignals,
    SignedTokens,
)
from hotelchat.adapters.storage import FilesystemStorage, S3Storage
from hotelchat.adapters.tokens import TiktokenCounter
from hotelchat.adapters.twilio import (
    RoutedHttpClient,
    TwilioContent,
    TwilioMedia,
    TwilioSignatures,
    TwilioWhatsApp,
    close_quietly,
)
from hotelchat.config import ConfigError, Settings
from hotelchat.domain.errors import Unavailable
from hotelchat.domain.pricing import PriceTable
from hotelchat.services.ports import Deps

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"


@dataclass
class Container:
    """Everything a process holds open, and the services' `Deps` built from it."""

    settings: Settings
    db: Database
    store: PostgresStore
    events: SocketIOEvents
    redis: ArqRedis
    twilio_http: RoutedHttpClient
    chat_model: OpenAIChatModel | None
    deps: Deps
    storage: FilesystemStorage | S3Storage | None = None
    twilio_media: TwilioMedia | None = None

    async def ready(self, timeout: float = 2.0) -> dict[str, str]:
        """`{"postgres": "ok" | "unavailable", "redis": ...}` within `timeout` seconds each."""
        result = {}
        try:
            await self.db.ping(timeout)
            result["postgres"] = "ok"
        except Unavailable:
            result["postgres"] = "unavailable"
        try:
            async with asyncio.timeout(timeout):
                await self.redis.ping()
            result["redis"] = "ok"
        except Exception:  # noqa: BLE001 - any failure means "not ready"; the class is logged by redis
            result["redis"] = "unavailable"
        return result

    async def close(self) -> None:
        """Close every client; each step is bounded."""
        if self.chat_model is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.chat_model.close()
        await close_quietly(self.twilio_http)
        if self.twilio_media is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.twilio_media.close()
        if self.storage is not None:
            await self.storage.close()
        with contextlib.suppress(Exception):
            await self.events.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.redis.aclose()
        await self.db.close()


def _embeddings(settings: Settings) -> LocalE5Embeddings | OpenAIEmbeddings:
    """In-process e5 by default; an embeddings API through the official client when asked."""
    if settings.embeddings_provider == "local":
        return LocalE5Embeddings(threads=settings.embeddings_threads)
    key = settings.embeddings_api_key or settings.openai_api_key
    if key is None:
        raise ConfigError("EMBEDDINGS_PROVIDER=openai needs EMBEDDINGS_API_KEY or OPENAI_API_KEY")
    client = create_client(
        api_key=key.get_secret_value(),
        base_url=settings.embeddings_base_url or settings.openai_base_url,
        timeout=settings.openai_attempt_timeout(),
    )
    return OpenAIEmbeddings(
        client,
        settings.embeddings_model,
        total_timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )


def media_storage(settings: Settings) -> FilesystemStorage | S3Storage:
    """The S3-compatible bucket S3_BUCKET names, else a folder (MEDIA_DIR, or `media/` in the
    state folder)."""
    if settings.s3_bucket is None:
        return FilesystemStorage(settings.media_dir or settings.state_dir / "media")
    key, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    return S3Storage(
        bucket=settings.s3_bucket,
        endpoint_url=str(settings.s3_endpoint_url) if settings.s3_endpoint_url else None,
        region=settings.s3_region,
        access_key_id=key.get_secret_value() if key else None,
        secret_access_key=secret.get_secret_value() if secret else None,
        timeout=settings.media_timeout_seconds,
    )


def token_cipher(settings: Settings) -> TokenCipher | None:
    """The cipher of Twilio auth tokens from ENCRYPTION_KEYS, or None when unset. Raises
    `ConfigError` for a malformed key."""
    if settings.encryption_keys is None:
        return None
    return TokenCipher.from_setting(settings.encryption_keys.get_secret_value())


def require_token_cipher(settings: Settings) -> TokenCipher:
    """`token_cipher`, for processes that cannot work without one (web, worker, operator):
    raises `ConfigError` at start-up when ENCRYPTION_KEYS is unset."""
    cipher = token_cipher(settings)
    if cipher is None:
        raise ConfigError("ENCRYPTION_KEYS is not set: it decrypts the Twilio auth tokens")
    return cipher


class _NoSecretKey:
    """Stands in for the token signer where SECRET_KEY is not set (workers need none)."""

    def sign(self, purpose: str, data: dict[str, Any]) -> str:
        raise ConfigError("SECRET_KEY is not set")

    def verify(self, purpose: str, token: str, *, max_age_seconds: float) -> dict[str, Any]:
        raise ConfigError("SECRET_KEY is not set")


def redis_connections(settings: Settings) -> int:
    """Redis connections one process may open: enough for every job of a worker to make a
    command at once (rate limits, stop signals, model slots), never fewer than 50."""
    return max(50, settings.worker_max_jobs + 20)


async def open_database(settings: Settings, dsn: str) -> Database:
    """A pool on `dsn` with the sizes and timeouts `settings` give; raises `Unavailable`."""
    pool = await create_pool(
        PoolConfig(
            dsn=dsn,
            min_size=settings.database_pool_min_size,
            max_size=settings.database_pool_max_size,
            acquire_timeout=settings.database_acquire_timeout_seconds,
            command_timeout=settings.database_command_timeout_seconds,
            connect_timeout=settings.database_connect_timeout_seconds,
        )
    )
    return Database(pool, acquire_timeout=settings.database_acquire_timeout_seconds)


async def build(
    settings: Settings,
    *,
    emitter: Any = None,
    verify_schema: bool = True,
    require_keys: bool = False,
) -> Container:
    """Open the pool and clients `settings` describe. `emitter` is the web process's Socket.IO
    server; without one (workers), events go out through a write-only Redis manager. With
    `require_keys` (web, worker), ENCRYPTION_KEYS must be set.

    Raises `ConfigError` for missing URLs or keys, `Unavailable` when PostgreSQL is unreachable
    and `SchemaError` when the database role or schema is wrong (see `verify_app_role`)."""
    cipher = require_token_cipher(settings) if require_keys else token_cipher(settings)
    db = await open_database(settings, settings.require_database_url())
    pool = db.pool
    try:
        if verify_schema:
            async with pool.acquire(timeout=settings.database_acquire_timeout_seconds) as conn:
                await verify_app_role(conn)
        redis = create_redis(
            settings.require_redis_url(),
            timeout=settings.redis_timeout_seconds,
            max_connections=redis_connections(settings),
        )
    except BaseException:
        await db.close()
        raise
    twilio_http = RoutedHttpClient(
        timeout=settings.twilio_timeout_seconds,
        base_url=str(settings.twilio_api_base_url) if settings.twilio_api_base_url else None,
    )
    chat_model = None
    if settings.openai_api_key is not None:
        chat_model = OpenAIChatModel(
            create_client(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                timeout=settings.openai_attempt_timeout(),
            ),
            total_timeout=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
        )
    events = SocketIOEvents(
        emitter if emitter is not None else create_emitter(settings.require_redis_url())
    )
    store = PostgresStore(db, cipher)
    storage = media_storage(settings)
    twilio_media = TwilioMedia(twilio_http, timeout=settings.media_timeout_seconds)
    deps = Deps(
        store=store,
        inbox=PostgresInbox(db),
        agents=PostgresAgents(db),
        events=events,
        knowledge=store,
        knowledge_base=PostgresKnowledge(db),
        embeddings=_embeddings(settings),
        jobs=ArqJobQueue(redis, timeout=settings.redis_timeout_seconds),
        whatsapp=TwilioWhatsApp(
            twilio_http,
            rate_limit_retries=settings.twilio_rate_limit_retries,
            rate_limit_backoff_seconds=settings.twilio_rate_limit_backoff_seconds,
        ),
        signatures=TwilioSignatures(),
        languages=FastTextLanguages(),
        passwords=Argon2Passwords(),
        limiter=RedisRateLimiter(redis, timeout=settings.redis_timeout_seconds),
        tokens=(
            SignedTokens(settings.secret_key.get_secret_value())
            if settings.secret_key is not None
            else _NoSecretKey()
        ),
        stop_signals=RedisStopSignals(redis, timeout=settings.redis_timeout_seconds),
        reservations=PostgresReservations(db),
        service_requests=PostgresServiceRequests(db),
        hotels=PostgresHotels(db),
        chat_model=chat_model,
        default_model=settings.openai_default_model,
        max_reply_tokens=settings.openai_max_reply_tokens,
        reply_lease_seconds=settings.reply_lease_seconds,
        status_callback_url=settings.public_url + STATUS_CALLBACK_PATH,
        max_attempts=settings.job_max_tries,
        lease_renewal_limit_seconds=settings.job_timeout_seconds,
        token_counter=TiktokenCounter(),
        prices=PriceTable(settings.openai_prices),
        breaker=RedisCircuitBreaker(
            redis,
            "openai",
            failure_threshold=settings.openai_breaker_failures,
            window_seconds=settings.openai_breaker_window_seconds,
            open_seconds=settings.openai_breaker_open_seconds,
            max_open_seconds=max(600.0, settings.openai_breaker_open_seconds),
            timeout=settings.redis_timeout_seconds,
        ),
        model_slots=RedisConcurrencyLimit(
            redis,
            "openai",
            limit=settings.openai_max_concurrent_calls,
            # A slot outlives the longest call it covers (see RedisConcurrencyLimit).
            lease_seconds=settings.openai_timeout_seconds * 2 + 30,
            timeout=settings.redis_timeout_seconds,
        ),
        answer_cache=(
            RedisAnswerCache(
                redis,
                ttl_seconds=settings.answer_cache_seconds,
                max_entries=settings.answer_cache_max_entries,
                timeout=settings.redis_timeout_seconds,
            )
            if settings.answer_cache_seconds > 0
            else None
        ),
        model_slot_wait_seconds=settings.openai_slot_wait_seconds,
        media=PostgresMedia(db, store.route_from_row),
        storage=storage,
        media_source=twilio_media,
        media_base_url=settings.twilio_media_base_url,
        public_url=settings.public_url,
        parts=PostgresMessageParts(db),
        consents=PostgresConsents(db),
        pacer=RedisSendPacer(
            redis,
            per_second=settings.whatsapp_sends_per_second,
            max_wait_seconds=settings.whatsapp_pacing_max_wait_seconds,
            timeout=settings.redis_timeout_seconds,
        ),
        opt_out_keywords=settings.keyword_table(),
        templates=PostgresTemplates(db),
        content=TwilioContent(twilio_http),
    )
    return Container(
        settings=settings,
        db=db,
        store=store,
        events=events,
        redis=redis,
        twilio_http=twilio_http,
        chat_model=chat_model,
        deps=deps,
        storage=storage,
        twilio_media=twilio_media,
    )


@dataclass
class OperatorContainer:
    """What `hotelchat operator` holds open: the operator role's pool (provisioning and
    knowledge, no guest data), the embedding queue, and the Kubernetes client for Secrets,
    ConfigMaps and Namespaces."""

    settings: Settings
    db: Database
    tenants: ProvisioningPool
    knowledge: PostgresKnowledge
    jobs: ArqJobQueue
    redis: ArqRedis
    cluster: KubernetesCluster

    async def close(self) -> None:
        """Close every client; each step is bounded."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.cluster.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.redis.aclose()
        await self.db.close()


async def build_operator(
    settings: Settings, *, cluster: KubernetesCluster | None = None
) -> OperatorContainer:
    """Open what the operator needs, as DATABASE_OPERATOR_URL. `cluster` defaults to a client
    configured in-cluster or from KUBECONFIG.

    Raises `ConfigError` (DATABASE_OPERATOR_URL, REDIS_URL or ENCRYPTION_KEYS unset),
    `Unavailable` (PostgreSQL unreachable, no Kubernetes credentials) and `SchemaError` (a role
    that could read guest data, or a schema not at the code's revision)."""
    if settings.database_operator_url is None:
        raise ConfigError("DATABASE_OPERATOR_URL is not set")
    cipher = require_token_cipher(settings)
    redis_url = settings.require_redis_url()
    db = await open_database(settings, settings.database_operator_url.get_secret_value())
    try:
        async with db.pool.acquire(timeout=settings.database_acquire_timeout_seconds) as conn:
            await verify_operator_role(conn)
        cluster = cluster or KubernetesCluster.from_environment()
    except BaseException:
        await db.close()
        raise
    redis = create_redis(redis_url, timeout=settings.redis_timeout_seconds)
    return OperatorContainer(
        settings=settings,
        db=db,
        tenants=ProvisioningPool(
            db, cipher, acquire_timeout=settings.database_acquire_timeout_seconds
        ),
        knowledge=PostgresKnowledge(db),
        jobs=ArqJobQueue(redis, timeout=settings.redis_timeout_seconds),
        redis=redis,
        cluster=cluster,
    )
