"""Alembic's entry point: runs the migrations over an asyncpg connection as the schema's owner.

`hotelchat migrate` passes the DSN in `config.attributes["dsn"]`; asyncpg parses it itself, so any
URL the application accepts (unix sockets, `sslmode=…`) works here unchanged.
"""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(dsn: str) -> None:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(dsn, timeout=10, command_timeout=300)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=connect)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run `hotelchat migrate`")
asyncio.run(_run_async(context.config.attributes["dsn"]))
