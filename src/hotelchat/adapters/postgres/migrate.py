"""Schema migrations (alembic) and the checks that keep the application's role honest.

`migrate` runs as the schema's owner (DATABASE_ADMIN_URL). The application connects as a different
role (DATABASE_URL) that is only a member of the `hotelchat_app` group: it can read and write rows
but owns nothing, so row-level security always applies to it. `verify_app_role` refuses to start
the application on a role that would bypass row-level security, or on a schema that is not at the
revision this code expects.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.postgres.database import Connection, SchemaError
from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.domain.errors import Unavailable

log = structlog.get_logger(__name__)

__all__ = ["SchemaError", "migrate", "verify_app_role", "verify_operator_role", "wait_for_schema"]

APP_GROUP_ROLE = "hotelchat_app"
OPERATOR_GROUP_ROLE = "hotelchat_operator"
MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 10.0


def _config(dsn: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["dsn"] = dsn
    return config


def head_revision() -> str:
    """The newest migration this code ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


async def migrate(
    admin_dsn: str,
    app_dsn: str | None = None,
    operator_dsn: str | None = None,
    cipher: TokenCipher | None = None,
) -> str:
    """Upgrade the schema to the newest revision as the owner, then grant `hotelchat_app` to
    `app_dsn`'s login role and `hotelchat_operator` to `operator_dsn`'s (when given and not the
    owner). With `cipher`, Twilio auth tokens still in plain text are encrypted and those made
    with an older key re-encrypted with the newest. Returns the revision.

    Raises `Unavailable` when PostgreSQL cannot be reached, `SchemaError` when the operator's
    URL logs in as the application's role (it must not read guest data).
    """
    # Alembic's env.py runs its own event loop; a worker thread keeps it off ours.
    await asyncio.to_thread(command.upgrade, _config(admin_dsn), "head")
    app_user = await _current_user(app_dsn) if app_dsn is not None else None
    operator_user = await _current_user(operator_dsn) if operator_dsn is not None else None
    if operator_user is not None and operator_user == app_user:
        raise SchemaError(
            "DATABASE_OPERATOR_URL and DATABASE_URL log in as the same role; the operator needs "
            "a role of its own (it must not read guests' conversations)"
        )
    admin = await _connect(admin_dsn)
    try:
        admin_user = await admin.fetchval("SELECT current_user")
        for user, group in ((app_user, APP_GROUP_ROLE), (operator_user, OPERATOR_GROUP_ROLE)):
            if user is not None and user != admin_user:
                grant = await admin.fetchval(
                    "SELECT format('GRANT %I TO %I', $1::text, $2::text)", group, user
                )
                await admin.execute(grant)
        prov = Provisioning(admin, cipher)
        if cipher is not None:
            encrypted, rotated = await prov.encrypt_tokens()
            if encrypted or rotated:
                log.info("database.tokens_encrypted", encrypted=encrypted, rotated=rotated)
        elif plain := await prov.plaintext_tokens():
            log.warning("database.plaintext_tokens", count=plain, fix="set ENCRYPTION_KEYS")
    finally:
        await admin.close()
    revision = head_revision()
    log.info("database.migrated", revision=revision)
    return revision


async def verify_app_role(conn: Connection) -> None:
    """Raise `SchemaError` unless `conn`'s role is bound by row-level security (not a superuser,
    not BYPASSRLS, owns no HotelChat table, member of `hotelchat_app`) and the schema is at
    `head_revision()`."""
    role = await conn.fetchrow(
        """SELECT current_user AS name, rolsuper, rolbypassrls,
                  pg_has_role(current_user, $1, 'USAGE') AS member
           FROM pg_roles WHERE rolname = current_user""",
        APP_GROUP_ROLE,
    )
    assert role is not None
    if role["rolsuper"] or role["rolbypassrls"]:
        raise SchemaError(
            f"DATABASE_URL logs in as {role['name']!r}, which bypasses row-level security; "
            f"use a role that is only a member of {APP_GROUP_ROLE!r}"
        )
    if not role["member"]:
        raise SchemaError(
            f"role {role['name']!r} is not a member of {APP_GROUP_ROLE!r}; run `hotelchat migrate`"
        )
    owned = await conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE tableowner = current_user "
        "AND tablename IN ('hotels', 'messages', 'conversations')"
    )
    if owned:
        raise SchemaError(
            f"role {role['name']!r} owns HotelChat's tables; the application must not "
            "connect as the schema's owner"
        )
    try:
        revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        revision = None
    if revision != head_revision():
        raise SchemaError(
            f"the database schema is at {revision!r}, this code needs {head_revision()!r}; "
            "run `hotelchat migrate`"
        )


async def verify_operator_role(conn: Connection) -> None:
    """Raise `SchemaError` unless `conn`'s role is fit for the operator: a member of
    `hotelchat_operator`, not of `hotelchat_app` (it must not read guest data), not a superuser
    or BYPASSRLS role, owning no HotelChat table, on a schema at `head_revision()`."""
    role = await conn.fetchrow(
        """SELECT current_user AS name, rolsuper, rolbypassrls,
                  pg_has_role(current_user, $1, 'USAGE') AS operator,
                  pg_has_role(current_user, $2, 'USAGE') AS app
           FROM pg_roles WHERE rolname = current_user""",
        OPERATOR_GROUP_ROLE,
        APP_GROUP_ROLE,
    )
    assert role is not None
    name = role["name"]
    if role["rolsuper"] or role["rolbypassrls"]:
        raise SchemaError(
            f"DATABASE_OPERATOR_URL logs in as {name!r}, which bypasses row-level security; "
            f"use a role that is only a member of {OPERATOR_GROUP_ROLE!r}"
        )
    if not role["operator"]:
        raise SchemaError(
            f"role {name!r} is not a member of {OPERATOR_GROUP_ROLE!r}; run `hotelchat migrate` "
            "with DATABASE_OPERATOR_URL set"
        )
    if role["app"]:
        raise SchemaError(f"role {name!r} is a member of {APP_GROUP_ROLE!r}: it could read guests")
    owned = await conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE tableowner = current_user AND tablename = 'hotels'"
    )
    if owned:
        raise SchemaError(f"role {name!r} owns HotelChat's tables; use a role of its own")
    revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    if revision != head_revision():
        raise SchemaError(
            f"the database schema is at {revision!r}, this code needs {head_revision()!r}; "
            "run `hotelchat migrate`"
        )


async def schema_revision(dsn: str) -> str | None:
    """The revision the database at `dsn` is at (None before the first migration). Any role
    may ask: `alembic_version` is readable by the application's and the operator's roles.
    Raises `Unavailable` when PostgreSQL cannot be reached."""
    conn = await _connect(dsn)
    try:
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    except asyncpg.InsufficientPrivilegeError as exc:
        raise SchemaError(
            "this role may not read alembic_version; run `hotelchat migrate`"
        ) from exc
    finally:
        await conn.close()
    return revision


async def wait_for_schema(dsn: str, *, timeout: float, poll_seconds: float = 2.0) -> str:
    """Wait until the database at `dsn` is at `head_revision()`, asking every `poll_seconds`
    seconds (an unreachable server counts as not yet); returns the revision. Raises
    `SchemaError` after `timeout` seconds, naming the revision last seen, or at once when the
    database is at a revision this code does not know (newer code migrated it: a rollback)."""
    head = head_revision()
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    deadline = asyncio.get_running_loop().time() + timeout
    seen: str | None = None
    while True:
        try:
            seen = await schema_revision(dsn)
        except Unavailable:
            log.info("database.unreachable_waiting_for_schema")
        else:
            if seen == head:
                return head
            if seen is not None and seen not in known:
                raise SchemaError(
                    f"the database schema is at {seen!r}, which this code does not know "
                    f"(it needs {head!r}): it was migrated by newer code"
                )
        if asyncio.get_running_loop().time() + poll_seconds > deadline:
            raise SchemaError(
                f"the database schema is at {seen!r}, this code needs {head!r}; "
                f"waited {timeout:.0f} s for `hotelchat migrate`"
            )
        await asyncio.sleep(poll_seconds)


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, command_timeout=60)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise Unavailable("PostgreSQL is not reachable") from exc


async def _current_user(dsn: str) -> str:
    conn = await _connect(dsn)
    try:
        user: str = await conn.fetchval("SELECT current_user")
        return user
    finally:
        await conn.close()
