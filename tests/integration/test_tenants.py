"""Provisioning (`services.tenants`, `services.knowledge.sync_file`) on the operator's own role:
idempotent steps, ownership of hotels, numbers retired instead of deleted, tokens encrypted at
rest, agents with one-time passwords, and a role that can provision but never read guests."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.postgres.database import Connection, Database, PoolConfig, create_pool
from hotelchat.adapters.postgres.knowledge import PostgresKnowledge
from hotelchat.adapters.postgres.migrate import SchemaError, migrate, verify_operator_role
from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.bootstrap import Container
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound
from hotelchat.domain.tenants import AgentSpec, AssistantSpec, HotelSpec, Owner, SenderSpec
from hotelchat.services import knowledge, tenants
from tests.conftest import CIPHER, ENCRYPTION_KEY, Backing, Tenant
from tests.helpers import receive

OWNER = Owner("uid-1", "sunrise-hotels", "lisbon-riverside")
SPEC = HotelSpec(
    chain_slug="sunrise-hotels",
    chain_name="Sunrise Hotels",
    slug="lisbon-riverside",
    name="Lisbon Riverside",
    timezone="Europe/Lisbon",
    languages=("en", "pt"),
    assistant=AssistantSpec(
        enabled=True, model="gpt-4o-mini", monthly_budget_usd=200, context_tokens=3000
    ),
    owner=OWNER,
)
NUMBER = "+351210000000"
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "t0ken-" + "a" * 26


@pytest.fixture
async def operator(backing: Backing) -> AsyncIterator[Provisioning]:
    """Provisioning as the operator's role (a member of hotelchat_operator only)."""
    conn = await asyncpg.connect(backing.operator_dsn)
    yield Provisioning(conn, CIPHER)
    await conn.close()


async def one(conn: Connection, query: str, *args: object) -> asyncpg.Record:
    row = await conn.fetchrow(query, *args)
    assert row is not None
    return row


class NoJobs:
    """The embedding queue, for tests that look at the entries, not at their vectors."""

    def __init__(self) -> None:
        self.queued: list[int] = []

    async def enqueue_reply(self, hotel_id: int, message_id: int) -> None:
        raise AssertionError("not queued here")

    async def enqueue_send(self, hotel_id: int, message_id: int) -> None:
        raise AssertionError("not queued here")

    async def enqueue_media(self, hotel_id: int, message_id: int) -> None:
        raise AssertionError("not queued here")

    async def enqueue_embedding(self, hotel_id: int) -> None:
        self.queued.append(hotel_id)


# --- the operator's role ----------------------------------------------------------------------


async def test_the_operator_role_provisions_but_never_reads_guests(
    operator: Provisioning, tenant: Tenant, container: Container, backing: Backing
) -> None:
    await receive(container, tenant, "hello")
    conn = operator.conn
    await verify_operator_role(conn)
    assert await conn.fetchval("SELECT count(*) FROM hotels") == 1
    for table in ("guests", "conversations", "messages", "reservations", "service_requests"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"SELECT count(*) FROM {table}")
    app = await asyncpg.connect(backing.app_dsn)
    try:
        with pytest.raises(SchemaError, match="not a member of 'hotelchat_operator'"):
            await verify_operator_role(app)
    finally:
        await app.close()


async def test_migrate_refuses_one_role_for_both(backing: Backing) -> None:
    with pytest.raises(SchemaError, match="same role"):
        await migrate(backing.admin_dsn, backing.app_dsn, backing.app_dsn)


# --- hotels -----------------------------------------------------------------------------------


async def test_a_hotel_is_created_once_and_updated_field_by_field(operator: Provisioning) -> None:
    first = await tenants.apply_hotel(operator, SPEC)
    assert first.created
    again = await tenants.apply_hotel(operator, SPEC)
    assert (again.hotel_id, again.created, again.changed) == (first.hotel_id, False, ())
    row = await one(
        operator.conn,
        """SELECT h.name, h.timezone, h.default_language, h.languages, h.ai_model,
                  h.monthly_budget_usd, h.context_token_budget, h.resource_uid, c.name AS chain
           FROM hotels h JOIN chains c ON c.id = h.chain_id WHERE h.id = $1""",
        first.hotel_id,
    )
    assert dict(row) | {"monthly_budget_usd": float(row["monthly_budget_usd"])} == {
        "name": "Lisbon Riverside",
        "timezone": "Europe/Lisbon",
        "default_language": "en",
        "languages": ["en", "pt"],
        "ai_model": "gpt-4o-mini",
        "monthly_budget_usd": 200.0,
        "context_token_budget": 3000,
        "resource_uid": "uid-1",
        "chain": "Sunrise Hotels",
    }
    changed = _replace(SPEC, name="Riverside", suspended=True, chain_name="Sunrise")
    updated = await tenants.apply_hotel(operator, changed)
    assert set(updated.changed) == {"name", "suspended"}
    assert await operator.conn.fetchval("SELECT name FROM chains") == "Sunrise"


def _replace(spec: HotelSpec, **changes: object) -> HotelSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


async def test_assistant_fields_left_out_are_left_to_the_managers(operator: Provisioning) -> None:
    applied = await tenants.apply_hotel(operator, SPEC)
    await operator.conn.execute("UPDATE hotels SET monthly_budget_usd = 50, ai_model = 'x'")
    unset = _replace(SPEC, assistant=AssistantSpec(enabled=True))
    assert (await tenants.apply_hotel(operator, unset)).changed == ()
    row = await one(
        operator.conn,
        "SELECT monthly_budget_usd, ai_model FROM hotels WHERE id = $1",
        applied.hotel_id,
    )
    assert (float(row["monthly_budget_usd"]), row["ai_model"]) == (50.0, "x")


async def test_a_slug_of_another_chain_or_another_resource_is_refused(
    operator: Provisioning,
) -> None:
    await tenants.apply_hotel(operator, SPEC)
    other_chain = _replace(
        SPEC,
        chain_slug="moonlight",
        chain_name="Moonlight",
        owner=Owner("uid-2", "moonlight", "lisbon-riverside"),
    )
    with pytest.raises(Conflict, match="another chain") as caught:
        await tenants.apply_hotel(operator, other_chain)
    assert caught.value.code == "slug_taken"
    other_resource = _replace(SPEC, owner=Owner("uid-3", "sunrise-hotels", "copy"))
    with pytest.raises(Conflict, match="Hotel sunrise-hotels/lisbon-riverside"):
        await tenants.apply_hotel(operator, other_resource)


async def test_a_hotel_made_by_hand_in_the_same_chain_is_adopted(operator: Provisioning) -> None:
    made = await tenants.create_hotel(
        operator,
        chain_slug="sunrise-hotels",
        chain_name="Sunrise Hotels",
        slug="lisbon-riverside",
        name="Lisbon",
    )
    applied = await tenants.apply_hotel(operator, SPEC)
    assert (applied.hotel_id, applied.created) == (made, False)
    assert await operator.conn.fetchval("SELECT resource_uid FROM hotels") == "uid-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slug": "Lisbon_Riverside"}, "not a valid name"),
        ({"timezone": "Europe/Atlantis"}, "not an IANA time zone"),
        ({"languages": ("english",)}, "ISO 639-1"),
        ({"name": " "}, "name has 1 to 200"),
        ({"chain_slug": "-x"}, "chain '-x' is not a valid name"),
    ],
)
async def test_bad_hotel_fields_are_refused_by_name(
    operator: Provisioning, change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await tenants.apply_hotel(operator, _replace(SPEC, **change))
    assert await operator.conn.fetchval("SELECT count(*) FROM hotels") == 0


# --- numbers ----------------------------------------------------------------------------------


async def test_numbers_are_routed_encrypted_re_keyed_and_retired(
    operator: Provisioning, admin: asyncpg.Connection
) -> None:
    hotel = (await tenants.apply_hotel(operator, SPEC)).hotel_id
    sender = SenderSpec(NUMBER, SID, TOKEN)
    applied = await tenants.apply_senders(operator, hotel, [sender])
    assert (applied.routed, applied.changed, applied.problems) == ([NUMBER], [NUMBER], {})
    row = await one(admin, "SELECT auth_token, auth_token_ciphertext FROM whatsapp_senders")
    assert row["auth_token"] is None
    assert TOKEN not in row["auth_token_ciphertext"]
    assert CIPHER.decrypt(row["auth_token_ciphertext"]) == TOKEN
    # The same again writes nothing; a rotated token is stored.
    assert (await tenants.apply_senders(operator, hotel, [sender])).changed == []
    rotated = SenderSpec(NUMBER, SID, "r0tated-" + "b" * 24)
    assert (await tenants.apply_senders(operator, hotel, [rotated])).changed == [NUMBER]
    # Removed from the spec: retired, not deleted; added again: the same row routes again.
    removed = await tenants.apply_senders(operator, hotel, [])
    assert removed.retired == [NUMBER]
    assert await admin.fetchval("SELECT retired_at IS NOT NULL FROM whatsapp_senders")
    await tenants.apply_senders(operator, hotel, [rotated])
    assert await admin.fetchval("SELECT count(*) FROM whatsapp_senders WHERE retired_at IS NULL")
    assert await admin.fetchval("SELECT count(*) FROM whatsapp_senders") == 1


async def test_a_number_of_another_hotel_is_a_problem_of_that_number_only(
    operator: Provisioning,
) -> None:
    first = (await tenants.apply_hotel(operator, SPEC)).hotel_id
    await tenants.apply_senders(operator, first, [SenderSpec(NUMBER, SID, TOKEN)])
    second = (
        await tenants.apply_hotel(
            operator, _replace(SPEC, slug="porto", owner=Owner("uid-9", "sunrise-hotels", "porto"))
        )
    ).hotel_id
    mine = SenderSpec("+351220000000", SID, TOKEN)
    applied = await tenants.apply_senders(
        operator, second, [SenderSpec(NUMBER, SID, TOKEN), mine, SenderSpec("0800", SID, TOKEN)]
    )
    assert applied.routed == ["+351220000000"]
    assert applied.problems[NUMBER].code == "number_taken"
    assert "routed to hotel 'lisbon-riverside'" in applied.problems[NUMBER].message
    assert "E.164" in applied.problems["0800"].message
    # Once the first hotel lets it go, the second may route it.
    await tenants.apply_senders(operator, first, [])
    applied = await tenants.apply_senders(operator, second, [SenderSpec(NUMBER, SID, TOKEN), mine])
    assert applied.problems == {}


async def test_a_number_whose_token_cannot_be_read_is_left_routed(operator: Provisioning) -> None:
    hotel = (await tenants.apply_hotel(operator, SPEC)).hotel_id
    await tenants.apply_senders(operator, hotel, [SenderSpec(NUMBER, SID, TOKEN)])
    applied = await tenants.apply_senders(operator, hotel, [], unreadable=[NUMBER])
    assert applied.retired == []


async def test_migrate_encrypts_plain_tokens_and_re_keys_old_ones(
    backing: Backing, admin: asyncpg.Connection, tenant: Tenant
) -> None:
    await admin.execute(
        "UPDATE whatsapp_senders SET auth_token = $1, auth_token_ciphertext = NULL",
        tenant.auth_token,
    )
    await migrate(backing.admin_dsn, backing.app_dsn, backing.operator_dsn, CIPHER)
    stored = await one(admin, "SELECT auth_token, auth_token_ciphertext FROM whatsapp_senders")
    assert stored["auth_token"] is None
    assert CIPHER.decrypt(stored["auth_token_ciphertext"]) == tenant.auth_token
    newer_key = base64.urlsafe_b64encode(b"a newer key for the rotation test").decode()[:43] + "="
    both = TokenCipher([newer_key, ENCRYPTION_KEY])
    assert not both.is_current(stored["auth_token_ciphertext"])
    await migrate(backing.admin_dsn, backing.app_dsn, backing.operator_dsn, both)
    rotated = await admin.fetchval("SELECT auth_token_ciphertext FROM whatsapp_senders")
    assert TokenCipher([newer_key]).decrypt(rotated) == tenant.auth_token


# --- agents -----------------------------------------------------------------------------------


async def test_agents_are_created_with_a_one_time_password_and_follow_the_spec(
    operator: Provisioning, admin: asyncpg.Connection
) -> None:
    hotel = (await tenants.apply_hotel(operator, SPEC)).hotel_id
    issued: list[str] = []

    async def issue(email: str) -> str:
        issued.append(email)
        return "one-time-password-" + email

    ana = AgentSpec("Ana@Example.com", "Ana", "manager")
    applied = await tenants.apply_agents(operator, hotel, "sunrise-hotels", [ana], issue)
    assert (applied.created, issued) == (["ana@example.com"], ["ana@example.com"])
    row = await one(admin, "SELECT password_change_required, display_name FROM agents")
    assert tuple(row) == (True, "Ana")
    again = await tenants.apply_agents(operator, hotel, "sunrise-hotels", [ana], issue)
    assert (again.created, again.removed, issued) == ([], [], ["ana@example.com"])
    renamed = AgentSpec("ana@example.com", "Ana Silva", "agent")
    await tenants.apply_agents(operator, hotel, "sunrise-hotels", [renamed], issue)
    assert await admin.fetchval("SELECT display_name FROM agents") == "Ana Silva"
    assert await admin.fetchval("SELECT role FROM agent_hotels") == "agent"
    agent_id = await admin.fetchval("SELECT id FROM agents")
    await admin.execute(
        """INSERT INTO agent_sessions (token_hash, agent_id, hotel_id, csrf_token, expires_at)
           VALUES ($1, $2, $3, $4, now() + interval '1 hour')""",
        b"h" * 32,
        agent_id,
        hotel,
        "c" * 40,
    )
    removed = await tenants.apply_agents(operator, hotel, "sunrise-hotels", [], issue)
    assert removed.removed == ["ana@example.com"]
    assert await admin.fetchval("SELECT count(*) FROM agent_hotels") == 0
    assert await admin.fetchval("SELECT count(*) FROM agent_sessions") == 0
    assert await admin.fetchval("SELECT count(*) FROM agents") == 1, "the login is kept"


async def test_an_agent_of_another_chain_is_a_problem_of_that_agent_only(
    operator: Provisioning,
) -> None:
    other = await tenants.apply_hotel(
        operator,
        _replace(
            SPEC,
            chain_slug="moonlight",
            chain_name="Moonlight",
            slug="m",
            owner=Owner("uid-5", "moonlight", "m"),
        ),
    )

    async def issue(email: str) -> str:
        return "one-time-password-" + email

    await tenants.apply_agents(
        operator, other.hotel_id, "moonlight", [AgentSpec("bo@example.com", "Bo")], issue
    )
    hotel = (await tenants.apply_hotel(operator, SPEC)).hotel_id
    applied = await tenants.apply_agents(
        operator,
        hotel,
        "sunrise-hotels",
        [
            AgentSpec("bo@example.com", "Bo"),
            AgentSpec("cy@example.com", "Cy"),
            AgentSpec("not-an-email", "X"),
        ],
        issue,
    )
    assert applied.created == ["cy@example.com"]
    assert applied.problems["bo@example.com"].code == "email_taken"
    assert "not an email" in applied.problems["not-an-email"].message


# --- deletion ---------------------------------------------------------------------------------


async def test_release_keeps_every_row_and_stops_routing(
    operator: Provisioning, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await receive(container, tenant, "hello")  # routed, so the route is now remembered
    retired = await tenants.release_hotel(operator, tenant.hotel_id)
    assert retired == 1
    with pytest.raises(NotFound):
        await receive(container, tenant, "still there?", guest="+15550001111")
    counts = await one(
        admin, "SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM hotels) AS h"
    )
    assert tuple(counts) == (1, 1)
    assert await admin.fetchval("SELECT suspended FROM hotels")


async def test_erase_deletes_the_tenant_and_says_how_much(
    operator: Provisioning,
    container: Container,
    tenant: Tenant,
    other_tenant: Tenant,
    admin: asyncpg.Connection,
) -> None:
    await receive(container, tenant, "hello")
    await receive(container, other_tenant, "hello B")
    counts = await tenants.erase_hotel(operator, tenant.hotel_id)
    assert counts["messages"] == 1
    assert counts["conversations"] == 1
    assert counts["guests"] == 1
    assert counts["knowledge_entries"] == 3
    assert counts["hotels"] == 1
    assert await admin.fetchval("SELECT array_agg(slug) FROM hotels") == ["hotel-b"]
    assert await admin.fetchval("SELECT count(*) FROM messages") == 1, "B's message stays"


# --- knowledge --------------------------------------------------------------------------------


async def test_a_knowledge_file_is_synced_entry_by_entry(backing: Backing) -> None:
    pool = await create_pool(PoolConfig(dsn=backing.operator_dsn, max_size=2))
    db = Database(pool, acquire_timeout=5)
    try:
        conn = await asyncpg.connect(backing.operator_dsn)
        try:
            hotel = (await tenants.apply_hotel(Provisioning(conn, CIPHER), SPEC)).hotel_id
        finally:
            await conn.close()
        kb, jobs = PostgresKnowledge(db), NoJobs()
        text = b"## Parking\nEUR 18 a day.\n\n## Breakfast\n7:00 to 10:30.\n"
        first = await knowledge.sync_file(kb, jobs, hotel, "kb.md", text)
        assert (first.added, first.updated, first.removed) == (2, 0, 0)
        version = await kb.version(hotel)
        same = await knowledge.sync_file(kb, jobs, hotel, "kb.md", text)
        assert not same.changed
        assert await kb.version(hotel) == version, "nothing changed, nothing to re-embed"
        edited = b"## parking\nEUR 20 a day.\n\n## Wi-Fi\nFree.\n"
        second = await knowledge.sync_file(kb, jobs, hotel, "kb.md", edited)
        assert (second.added, second.updated, second.removed) == (1, 1, 1)
        assert sorted(e.title for e in await kb.entries(hotel)) == ["Wi-Fi", "parking"]
        with pytest.raises(InvalidInput, match="line 1"):
            await knowledge.sync_file(kb, jobs, hotel, "kb.md", b"## " + b"x" * 201 + b"\nbody\n")
        assert len(await kb.entries(hotel)) == 2, "a malformed file changes nothing"
        assert jobs.queued == [hotel, hotel]
    finally:
        await db.close()


async def test_a_suspended_hotels_web_chat_is_gone_for_guests_only(
    operator: Provisioning, container: Container, tenant: Tenant
) -> None:
    from hotelchat.services import webchat

    assert await webchat.hotel_id_for(container.deps, tenant.slug) == tenant.hotel_id
    await operator.update_suspended(tenant.hotel_id, suspended=True)
    with pytest.raises(NotFound):
        await webchat.hotel_id_for(container.deps, tenant.slug)
    staff = await container.store.route_hotel(tenant.slug, for_guests=False)
    assert staff == tenant.hotel_id


async def test_a_token_no_key_opens_is_a_503_never_a_wrong_answer(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    from hotelchat.domain.errors import Unavailable

    other_key = base64.urlsafe_b64encode(b"a key that is not configured here").decode()[:43] + "="
    await admin.execute(
        "UPDATE whatsapp_senders SET auth_token_ciphertext = $1",
        TokenCipher([other_key]).encrypt(tenant.auth_token),
    )
    with pytest.raises(Unavailable) as caught:
        await receive(container, tenant, "hello")
    assert caught.value.code == "credentials_unreadable"
    assert await admin.fetchval("SELECT count(*) FROM messages") == 0
