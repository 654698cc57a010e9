"""Row-level security: the application's role sees one hotel's rows per transaction, and nothing
without a tenant; a pooled connection carries nothing from one hotel to the next."""

from __future__ import annotations

import asyncpg
import pytest

from hotelchat.adapters.postgres.database import Connection, Database, PoolConfig, create_pool
from hotelchat.adapters.postgres.migrate import SchemaError, head_revision, verify_app_role
from hotelchat.adapters.postgres.store import PostgresStore
from hotelchat.domain.model import InboundWhatsApp
from tests.conftest import CIPHER, Backing, Tenant

TENANT_TABLES = ("hotels", "whatsapp_senders", "guests", "conversations", "messages", "kb_entries")


async def _store_message(store: PostgresStore, tenant: Tenant, sid: str, body: str) -> None:
    route = await store.route_whatsapp_sender(tenant.phone_number)
    assert route is not None
    await store.record_inbound_whatsapp(
        route,
        InboundWhatsApp(
            message_sid=sid,
            account_sid=tenant.account_sid,
            from_number="+15551234567",
            to_number=tenant.phone_number,
            body=body,
            wa_id="15551234567",
            profile_name="Guest",
            num_media=0,
        ),
        "en",
    )


@pytest.fixture
async def one_connection(backing: Backing) -> Database:
    pool = await create_pool(PoolConfig(dsn=backing.app_dsn, min_size=1, max_size=1))
    return Database(pool, acquire_timeout=5)


async def test_without_a_tenant_the_app_role_sees_nothing(
    backing: Backing, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    store = PostgresStore(
        Database(await create_pool(PoolConfig(dsn=backing.app_dsn)), acquire_timeout=5), CIPHER
    )
    await _store_message(store, tenant, "SM" + "a" * 32, "hello from A")
    for table in TENANT_TABLES:
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") > 0, table
    conn = await asyncpg.connect(backing.app_dsn)
    try:
        for table in (*TENANT_TABLES, "chains", "agents"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        # Setting the tenant to an empty string (what a finished SET LOCAL leaves) is no tenant.
        async with conn.transaction():
            await conn.execute("SELECT set_config('hotelchat.hotel_id', '', true)")
            assert await conn.fetchval("SELECT count(*) FROM messages") == 0
    finally:
        await conn.close()
    await store.db.close()


async def test_one_pooled_connection_never_leaks_a_hotel_to_the_next(
    one_connection: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    store = PostgresStore(one_connection, CIPHER)
    await _store_message(store, tenant, "SM" + "a" * 32, "secret of hotel A")
    await _store_message(store, other_tenant, "SM" + "b" * 32, "note of hotel B")

    async def bodies(conn: Connection) -> tuple[int, list[str]]:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        return pid, [r["body"] for r in await conn.fetch("SELECT body FROM messages")]

    pid_a, seen_a = await one_connection.tenant(tenant.hotel_id, bodies, idempotent=True)
    pid_b, seen_b = await one_connection.tenant(other_tenant.hotel_id, bodies, idempotent=True)
    pid_none, seen_none = await one_connection.platform(bodies, idempotent=True)
    assert pid_a == pid_b == pid_none, "the pool has one connection; all three used it"
    assert seen_a == ["secret of hotel A"]
    assert seen_b == ["note of hotel B"]
    assert seen_none == []
    await one_connection.close()


async def test_a_tenant_cannot_write_rows_of_another(
    one_connection: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    async def insert_foreign_guest(conn: Connection) -> None:
        await conn.execute(
            "INSERT INTO guests (hotel_id, wa_id) VALUES ($1, '15550009999')", other_tenant.hotel_id
        )

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await one_connection.tenant(tenant.hotel_id, insert_foreign_guest, idempotent=False)

    async def update_all_hotels(conn: Connection) -> str:
        return str(await conn.execute("UPDATE hotels SET name = 'pwned'"))

    assert (
        await one_connection.tenant(tenant.hotel_id, update_all_hotels, idempotent=False)
        == "UPDATE 1"
    )
    await one_connection.close()


async def test_the_app_role_cannot_create_tenants(backing: Backing) -> None:
    conn = await asyncpg.connect(backing.app_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO chains (slug, name) VALUES ('evil', 'Evil')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE messages DISABLE ROW LEVEL SECURITY")
    finally:
        await conn.close()


async def test_the_app_refuses_a_role_that_bypasses_row_level_security(backing: Backing) -> None:
    app = await asyncpg.connect(backing.app_dsn)
    owner = await asyncpg.connect(backing.admin_dsn)
    try:
        await verify_app_role(app)  # the test role is fine
        with pytest.raises(SchemaError, match="bypasses row-level security"):
            await verify_app_role(owner)
        assert await app.fetchval("SELECT version_num FROM alembic_version") == head_revision()
    finally:
        await app.close()
        await owner.close()


async def test_routing_reveals_only_the_number_asked_for(
    one_connection: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    store = PostgresStore(one_connection, CIPHER)
    route = await store.route_whatsapp_sender(tenant.phone_number)
    assert route is not None
    assert (route.hotel_id, route.account_sid) == (tenant.hotel_id, tenant.account_sid)
    assert "auth_token" not in repr(route) and tenant.auth_token not in repr(route)
    assert await store.route_whatsapp_sender("+19999999999") is None
    await one_connection.close()
