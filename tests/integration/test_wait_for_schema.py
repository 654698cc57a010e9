"""`hotelchat wait-for-schema`, the init container of every pod: it returns once the database is
at the code's migration, waits while it is not (or unreachable), and refuses a schema newer than
the code."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hotelchat.adapters.postgres.migrate import (
    SchemaError,
    head_revision,
    migrate,
    wait_for_schema,
)
from tests.conftest import Backing


def cli(*args: str, database_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database_url, "LOG_FORMAT": "console"}
    return subprocess.run(
        [sys.executable, "-m", "hotelchat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` instead (pgserver's URLs end in /<db>?host=…)."""
    base, _, query = dsn.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def scratch(admin: asyncpg.Connection, backing: Backing) -> AsyncIterator[tuple[str, str]]:
    """An empty database of its own: (admin URL, app URL)."""
    name = "hc_wait_" + secrets.token_hex(4)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(backing.admin_dsn, name), with_database(backing.app_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_a_migrated_database_is_ready_at_once(backing: Backing) -> None:
    result = cli("wait-for-schema", "--timeout", "5", database_url=backing.app_dsn)
    assert result.returncode == 0, result.stderr
    assert f"database at revision {head_revision()}" in result.stdout


def test_an_unmigrated_database_makes_it_wait_then_fail(scratch: tuple[str, str]) -> None:
    _, app_dsn = scratch
    result = cli("wait-for-schema", "--timeout", "2", database_url=app_dsn)
    assert result.returncode == 1
    assert "schema is at None" in result.stderr
    assert "hotelchat migrate" in result.stderr


async def test_it_returns_once_the_migration_has_run(scratch: tuple[str, str]) -> None:
    admin_dsn, app_dsn = scratch
    waiting = asyncio.create_task(wait_for_schema(app_dsn, timeout=60, poll_seconds=0.2))
    await asyncio.sleep(1)
    assert not waiting.done()
    await migrate(admin_dsn, app_dsn)
    assert await asyncio.wait_for(waiting, 30) == head_revision()


async def test_a_schema_newer_than_the_code_is_refused_at_once(scratch: tuple[str, str]) -> None:
    admin_dsn, app_dsn = scratch
    await migrate(admin_dsn, app_dsn)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = '9999'")
    finally:
        await conn.close()
    with pytest.raises(SchemaError, match="does not know"):
        await wait_for_schema(app_dsn, timeout=60)


async def test_an_unreachable_server_counts_as_not_yet() -> None:
    with pytest.raises(SchemaError, match="waited 1 s"):
        await wait_for_schema("postgresql://nobody@127.0.0.1:9/none", timeout=1, poll_seconds=0.2)


def test_without_database_url_it_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hotelchat", "wait-for-schema"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


async def test_the_passages_migration_downgrades_and_upgrades_again(
    scratch: tuple[str, str],
) -> None:
    """Down to 0005, through every later downgrade: the two vector columns are back (of the
    same type) with every entry to embed again; up again recreates kb_passages."""
    from alembic import command

    from hotelchat.adapters.postgres.migrate import _config

    admin_dsn, app_dsn = scratch
    await migrate(admin_dsn, app_dsn)
    await asyncio.to_thread(command.downgrade, _config(admin_dsn), "0005")
    conn = await asyncpg.connect(admin_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('kb_passages')") is None
        kind = await conn.fetchval(
            """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
               WHERE attrelid = 'kb_entries'::regclass AND attname = 'embedding_title'"""
        )
        assert kind in ("vector", "double precision[]")
    finally:
        await conn.close()
    await migrate(admin_dsn, app_dsn)
    assert await wait_for_schema(app_dsn, timeout=10) == head_revision() == "0009"
