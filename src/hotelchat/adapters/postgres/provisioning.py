"""Platform-operator writes: chains, hotels, WhatsApp senders, agents and knowledge-base entries.

These run on a connection as the schema's owner (DATABASE_ADMIN_URL), which row-level security
does not bind: creating a tenant is by definition done before there is one. The application's
role can read these rows only inside the tenant they belong to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher

from hotelchat.adapters.postgres.reservations import upsert_reservations
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from hotelchat.services.ports import Reservation

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (argon2-cffi's default, RFC 9106 low-memory profile)."""
    if not 10 <= len(password) <= 256:
        raise InvalidInput("a password has 10 to 256 characters")
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class HotelRow:
    id: int
    slug: str
    name: str
    chain_slug: str


class Provisioning:
    """Owner-side writes on one connection; each method is its own transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def ensure_chain(self, slug: str, name: str) -> int:
        """The id of chain `slug`, creating it with `name` if missing."""
        chain_id: int = await self.conn.fetchval(
            """INSERT INTO chains (slug, name) VALUES ($1, $2)
               ON CONFLICT (slug) DO UPDATE SET name = chains.name RETURNING id""",
            slug,
            name,
        )
        return chain_id

    async def create_hotel(
        self,
        *,
        chain_slug: str,
        slug: str,
        name: str,
        description: str = "",
        timezone: str = "UTC",
        default_language: str = "en",
        search_config: str = "english",
    ) -> int:
        """Create hotel `slug` in chain `chain_slug`; raises `NotFound` (no such chain) or
        `Conflict` (the slug is taken)."""
        chain_id = await self.conn.fetchval("SELECT id FROM chains WHERE slug = $1", chain_slug)
        if chain_id is None:
            raise NotFound(f"no chain {chain_slug!r}")
        try:
            hotel_id: int = await self.conn.fetchval(
                """INSERT INTO hotels (chain_id, slug, name, description, timezone,
                                       default_language, search_config)
                   VALUES ($1, $2, $3, $4, $5, $6, $7::regconfig) RETURNING id""",
                chain_id,
                slug,
                name,
                description,
                timezone,
                default_language,
                search_config,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"hotel {slug!r} exists") from exc
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"invalid hotel: {exc.constraint_name}") from exc
        return hotel_id

    async def hotel(self, slug: str) -> HotelRow:
        """Hotel `slug`; raises `NotFound`."""
        row = await self.conn.fetchrow(
            """SELECT h.id, h.slug, h.name, c.slug AS chain_slug
               FROM hotels h JOIN chains c ON c.id = h.chain_id WHERE h.slug = $1""",
            slug,
        )
        if row is None:
            raise NotFound(f"no hotel {slug!r}")
        return HotelRow(row["id"], row["slug"], row["name"], row["chain_slug"])

    async def hotels(self) -> list[HotelRow]:
        rows = await self.conn.fetch(
            """SELECT h.id, h.slug, h.name, c.slug AS chain_slug
               FROM hotels h JOIN chains c ON c.id = h.chain_id ORDER BY c.slug, h.slug"""
        )
        return [HotelRow(r["id"], r["slug"], r["name"], r["chain_slug"]) for r in rows]

    async def add_whatsapp_sender(
        self, *, hotel_slug: str, phone_number: str, account_sid: str, auth_token: str
    ) -> int:
        """Route WhatsApp number `phone_number` (E.164) to the hotel, with the Twilio account
        that owns it. Raises `Conflict` when another hotel uses the number."""
        hotel = await self.hotel(hotel_slug)
        try:
            sender_id: int = await self.conn.fetchval(
                """INSERT INTO whatsapp_senders (hotel_id, phone_number, account_sid, auth_token)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (phone_number) DO UPDATE
                     SET account_sid = EXCLUDED.account_sid, auth_token = EXCLUDED.auth_token
                     WHERE whatsapp_senders.hotel_id = EXCLUDED.hotel_id
                   RETURNING id""",
                hotel.id,
                phone_number,
                account_sid,
                auth_token,
            )
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"invalid sender: {exc.constraint_name}") from exc
        if sender_id is None:
            raise Conflict("another hotel uses this WhatsApp number")
        return sender_id

    async def add_agent(
        self,
        *,
        chain_slug: str,
        email: str,
        display_name: str,
        password: str,
        hotel_slugs: list[str],
        role: str = "agent",
    ) -> int:
        """Create (or update the password and hotels of) agent `email` in the chain."""
        chain_id = await self.conn.fetchval("SELECT id FROM chains WHERE slug = $1", chain_slug)
        if chain_id is None:
            raise NotFound(f"no chain {chain_slug!r}")
        hotels = [await self.hotel(slug) for slug in hotel_slugs]
        if any(h.chain_slug != chain_slug for h in hotels):
            raise InvalidInput("an agent's hotels must belong to the agent's chain")
        async with self.conn.transaction():
            agent_id: int = await self.conn.fetchval(
                """INSERT INTO agents (chain_id, email, display_name, password_hash)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (lower(email)) DO UPDATE
                     SET display_name = EXCLUDED.display_name,
                         password_hash = EXCLUDED.password_hash
                     WHERE agents.chain_id = EXCLUDED.chain_id
                   RETURNING id""",
                chain_id,
                email,
                display_name,
                hash_password(password),
            )
            if agent_id is None:
                raise Conflict("an agent of another chain has this email")
            for hotel in hotels:
                await self.conn.execute(
                    """INSERT INTO agent_hotels (agent_id, hotel_id, role) VALUES ($1, $2, $3)
                       ON CONFLICT (agent_id, hotel_id) DO UPDATE SET role = EXCLUDED.role""",
                    agent_id,
                    hotel.id,
                    role,
                )
        return agent_id

    async def add_knowledge(
        self, *, hotel_slug: str, title: str, body: str, keywords: str = ""
    ) -> int:
        """Add one knowledge-base entry in the hotel's text-search configuration and bump the
        hotel's knowledge version. Its vectors are computed by the worker."""
        hotel = await self.hotel(hotel_slug)
        async with self.conn.transaction():
            entry_id: int = await self.conn.fetchval(
                """INSERT INTO kb_entries (hotel_id, title, body, keywords, search_config)
                   SELECT id, $2, $3, $4, search_config FROM hotels WHERE id = $1 RETURNING id""",
                hotel.id,
                title,
                body,
                keywords,
            )
            await self.conn.execute(
                "UPDATE hotels SET knowledge_version = knowledge_version + 1 WHERE id = $1",
                hotel.id,
            )
        return entry_id

    async def add_reservations(
        self, *, hotel_slug: str, reservations: Sequence[Reservation], source: str
    ) -> tuple[int, int]:
        """Add or update the hotel's reservations by code in one transaction; returns (added,
        updated). Raises `NotFound` (no such hotel) or `InvalidInput` (naming a reservation)."""
        hotel = await self.hotel(hotel_slug)
        async with self.conn.transaction():
            return await upsert_reservations(self.conn, hotel.id, reservations, source=source)


@asynccontextmanager
async def open_provisioning(dsn: str) -> AsyncIterator[Provisioning]:
    """A `Provisioning` on one connection to `dsn` (the schema owner's URL), closed on exit.
    Raises `Unavailable` when PostgreSQL cannot be reached within 10 seconds."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10, command_timeout=60)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise Unavailable("PostgreSQL is not reachable") from exc
    try:
        yield Provisioning(conn)
    finally:
        await conn.close()
