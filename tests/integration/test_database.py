"""The pool's bounded waits and its retries: a dropped connection is retried only for work that is
safe to repeat; a full pool or a slow statement fails fast with `Unavailable`."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from hotelchat.adapters.postgres.database import Connection, Database, PoolConfig, create_pool
from hotelchat.domain.errors import Unavailable
from tests.conftest import Backing, Tenant


async def one_connection(backing: Backing, **config: float) -> Database:
    pool = await create_pool(PoolConfig(dsn=backing.app_dsn, min_size=1, max_size=1, **config))
    return Database(pool, acquire_timeout=float(config.get("acquire_timeout", 5.0)))


async def backend_pid(conn: Connection) -> int:
    pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


def dropped_mid_transaction(admin: asyncpg.Connection, attempts: list[int]):  # type: ignore[no-untyped-def]
    """Work whose first attempt loses its connection halfway (the server terminates it, as a
    failover, an SSL reset or an administrator would)."""

    async def work(conn: Connection) -> int:
        attempts.append(await backend_pid(conn))
        if len(attempts) == 1:
            await admin.execute("SELECT pg_terminate_backend($1)", attempts[0])
            await asyncio.sleep(0.05)
        count: int = await conn.fetchval("SELECT count(*) FROM hotels")
        return count

    return work


async def test_a_dropped_connection_is_retried_when_the_work_is_idempotent(
    backing: Backing, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    db = await one_connection(backing)
    attempts: list[int] = []
    try:
        work = dropped_mid_transaction(admin, attempts)
        assert await db.tenant(tenant.hotel_id, work, idempotent=True) == 1
        assert len(attempts) == 2
        assert attempts[0] != attempts[1], "the retry ran on a new connection"
    finally:
        await db.close()


async def test_a_dropped_connection_is_not_retried_when_the_work_is_not_idempotent(
    backing: Backing, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    db = await one_connection(backing)
    attempts: list[int] = []
    try:
        work = dropped_mid_transaction(admin, attempts)
        with pytest.raises(Unavailable):
            await db.tenant(tenant.hotel_id, work, idempotent=False)
        assert len(attempts) == 1
        # The pool replaced the broken connection: the next call works.
        assert await db.tenant(tenant.hotel_id, backend_pid, idempotent=False) != attempts[0]
    finally:
        await db.close()


async def test_a_full_pool_fails_fast(backing: Backing, tenant: Tenant) -> None:
    db = await one_connection(backing, acquire_timeout=0.3)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold(conn: Connection) -> None:
        held.set()
        await release.wait()

    holder = asyncio.create_task(db.tenant(tenant.hotel_id, hold, idempotent=False))
    await held.wait()
    try:
        with pytest.raises(Unavailable, match="busy"):
            await db.tenant(tenant.hotel_id, backend_pid, idempotent=True)
    finally:
        release.set()
        await holder
        await db.close()


async def test_a_slow_statement_is_cut_off(backing: Backing, tenant: Tenant) -> None:
    db = await one_connection(backing, command_timeout=0.3)

    async def slow(conn: Connection) -> None:
        await conn.execute("SELECT pg_sleep(5)")

    try:
        with pytest.raises(Unavailable):
            await db.tenant(tenant.hotel_id, slow, idempotent=True)
    finally:
        await db.close()


async def test_an_unreachable_server_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await create_pool(
            PoolConfig(dsn="postgresql://nobody@127.0.0.1:1/none", connect_timeout=1, min_size=1)
        )
