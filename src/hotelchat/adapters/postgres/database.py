"""The asyncpg pool, and the one way to run SQL: a transaction scoped to a tenant.

Every query that touches a hotel's rows runs in `Database.tenant(hotel_id, work)`: one pooled
connection, one transaction, `hotelchat.hotel_id` set transaction-locally so PostgreSQL's row-level
security shows that hotel's rows and nothing else. When the transaction ends the setting is gone,
so the next user of the connection starts with no tenant at all.

Waits are bounded: acquiring a connection (`DATABASE_ACQUIRE_TIMEOUT_SECONDS`), each statement
(`DATABASE_COMMAND_TIMEOUT_SECONDS`) and connecting. A dropped connection (an SSL reset, a
failover, a server restart) or a serialization failure is retried, at most three attempts in all,
and only for work the caller declares safe to repeat; everything else surfaces as `Unavailable`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from hotelchat.domain.errors import Unavailable
from hotelchat.observability import metrics

T = TypeVar("T")

# What `work` callbacks receive: a pooled connection (or, from `migrate`, a plain one).
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
log = structlog.get_logger(__name__)

TENANT_SETTING = "hotelchat.hotel_id"
MAX_ATTEMPTS = 3

_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: the connection is gone
    asyncpg.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by an administrator or a failover
    asyncpg.SerializationError,  # 40001
    asyncpg.DeadlockDetectedError,  # 40P01
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InterfaceError,  # "connection is closed" on a connection the pool handed out
    ConnectionError,
    ssl.SSLError,
)


class SchemaError(Exception):
    """The database is not fit for the application: wrong role, or not migrated (raised by
    `migrate`'s checks; defined here, where every process can name it without importing
    alembic)."""


def is_transient(exc: BaseException) -> bool:
    """True for failures that a new attempt on a fresh connection may not meet again."""
    return isinstance(exc, _TRANSIENT)


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """How to reach PostgreSQL; sizes are connections, times are seconds."""

    dsn: str
    min_size: int = 1
    max_size: int = 10
    acquire_timeout: float = 5.0
    command_timeout: float = 10.0
    connect_timeout: float = 5.0
    # Idle connections are closed after this long, so a connection silently cut by a firewall
    # or load balancer is not handed out hours later.
    max_idle: float = 300.0


async def create_pool(config: PoolConfig) -> asyncpg.Pool:
    """Open a pool; raises `Unavailable` when PostgreSQL cannot be reached in time."""
    try:
        pool = await asyncpg.create_pool(
            config.dsn,
            min_size=config.min_size,
            max_size=config.max_size,
            command_timeout=config.command_timeout,
            timeout=config.connect_timeout,
            max_inactive_connection_lifetime=config.max_idle,
            server_settings={
                "application_name": "hotelchat",
                # Let the server notice a dead client within minutes, not hours.
                "tcp_keepalives_idle": "60",
                "tcp_keepalives_interval": "10",
                "tcp_keepalives_count": "6",
                # A transaction left open by a bug must not hold locks forever.
                "idle_in_transaction_session_timeout": "60000",
            },
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise Unavailable("PostgreSQL is not reachable") from exc
    assert pool is not None
    return pool


class Database:
    """A pool plus the transaction helpers every query goes through."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float) -> None:
        self.pool = pool
        self._acquire_timeout = acquire_timeout
        metrics.DB_POOL_MAX.inc(pool.get_max_size())
        metrics.DB_POOL_SIZE.inc(pool.get_size())
        self._size = pool.get_size()

    async def tenant(
        self,
        hotel_id: int,
        work: Callable[[Connection], Awaitable[T]],
        *,
        idempotent: bool,
    ) -> T:
        """Run `work(conn)` in one transaction that sees only hotel `hotel_id`'s rows.

        `idempotent=True` declares that running `work` twice has the effect of running it once
        (unique keys, state checks); only then is a dropped connection retried.
        Raises `Unavailable` when no connection frees up in time or PostgreSQL keeps failing.
        """

        async def scoped(conn: Connection) -> T:
            await conn.execute("SELECT set_config($1, $2, true)", TENANT_SETTING, str(hotel_id))
            return await work(conn)

        return await self._run(scoped, idempotent=idempotent)

    async def platform(self, work: Callable[[Connection], Awaitable[T]], *, idempotent: bool) -> T:
        """Run `work(conn)` in one transaction with no tenant: only the routing functions
        (`hotelchat_route_*`, `hotelchat_stalled_work`) return anything there."""
        return await self._run(work, idempotent=idempotent)

    async def ping(self, timeout: float) -> None:
        """Raise `Unavailable` unless PostgreSQL answers `SELECT 1` within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise Unavailable("PostgreSQL did not answer") from exc

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool, waiting at most `timeout` seconds for connections in use."""
        try:
            async with asyncio.timeout(timeout):
                await self.pool.close()
        except TimeoutError:
            self.pool.terminate()
        metrics.DB_POOL_MAX.dec(self.pool.get_max_size())
        metrics.DB_POOL_SIZE.dec(self._size)
        self._size = 0

    async def _run(self, work: Callable[[Connection], Awaitable[T]], *, idempotent: bool) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(MAX_ATTEMPTS if idempotent else 1),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(work)
        except TimeoutError as exc:
            raise Unavailable("PostgreSQL is busy; try again") from exc
        except _TRANSIENT as exc:
            log.warning("database.unavailable", error_class=type(exc).__name__)
            raise Unavailable("PostgreSQL is unavailable; try again") from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _once(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        metrics.DB_POOL_WAITING.inc()
        waiting = True
        try:
            async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
                metrics.DB_POOL_WAITING.dec()
                waiting = False
                metrics.DB_POOL_IN_USE.inc()
                self._track_size()
                try:
                    async with conn.transaction():
                        return await work(conn)
                finally:
                    metrics.DB_POOL_IN_USE.dec()
        finally:
            if waiting:
                metrics.DB_POOL_WAITING.dec()

    def _track_size(self) -> None:
        size = self.pool.get_size()
        if size != self._size:
            metrics.DB_POOL_SIZE.inc(size - self._size)
            self._size = size
