"""Provisioning writes: chains, hotels, WhatsApp senders, agents and knowledge-base entries
(`services.ports.TenantStore`, and the demo's seeding).

These run on one connection as the schema's owner (DATABASE_ADMIN_URL, the CLI) or as the
operator's role (DATABASE_OPERATOR_URL, a member of `hotelchat_operator`, which its own policies
let see every provisioning row and no guest data). Each method is its own transaction. Twilio
auth tokens are encrypted here, on their way in, and decrypted on their way out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.adapters.postgres.reservations import upsert_reservations
from hotelchat.config import ConfigError
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from hotelchat.domain.templates import Template
from hotelchat.domain.tenants import HotelSpec, Owner, SenderSpec
from hotelchat.services.ports import (
    Reservation,
    StoredMembership,
    StoredSender,
    TenantHotel,
)

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
    """Provisioning on one connection; `cipher` encrypts and decrypts Twilio auth tokens
    (without one, storing or reading a token raises `ConfigError`)."""

    def __init__(self, conn: Connection, cipher: TokenCipher | None = None) -> None:
        self.conn = conn
        self.cipher = cipher

    def _require_cipher(self) -> TokenCipher:
        if self.cipher is None:
            raise ConfigError("ENCRYPTION_KEYS is not set: it encrypts Twilio auth tokens")
        return self.cipher

    async def _chain_id(self, slug: str) -> int:
        """The id of chain `slug`; raises `NotFound`."""
        chain_id: int | None = await self.conn.fetchval(
            "SELECT id FROM chains WHERE slug = $1", slug
        )
        if chain_id is None:
            raise NotFound(f"no chain {slug!r}")
        return chain_id

    # --- chains and hotels ----------------------------------------------------------------

    async def ensure_chain(self, slug: str, name: str, *, rename: bool = False) -> int:
        """The id of chain `slug`, creating it with `name` if missing (and renaming it to
        `name` with `rename`)."""
        chain_id: int = await self.conn.fetchval(
            """INSERT INTO chains (slug, name) VALUES ($1, $2)
               ON CONFLICT (slug) DO UPDATE
                 SET name = CASE WHEN $3 THEN EXCLUDED.name ELSE chains.name END
               RETURNING id""",
            slug,
            name,
            rename,
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
        languages: Sequence[str] = (),
        owner: Owner | None = None,
        search_config: str = "english",
    ) -> int:
        """Create hotel `slug` in chain `chain_slug`; raises `NotFound` (no such chain) or
        `Conflict` (the slug is taken)."""
        chain_id = await self._chain_id(chain_slug)
        try:
            hotel_id: int = await self.conn.fetchval(
                """INSERT INTO hotels (chain_id, slug, name, description, timezone,
                                       default_language, languages, search_config,
                                       resource_uid, resource_name)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8::regconfig, $9, $10) RETURNING id""",
                chain_id,
                slug,
                name,
                description,
                timezone,
                default_language,
                list(languages or [default_language]),
                search_config,
                owner.uid if owner else None,
                owner.label if owner else None,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"hotel {slug!r} exists", code="slug_taken") from exc
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"invalid hotel: {exc.constraint_name}") from exc
        return hotel_id

    async def hotel_record(self, slug: str) -> TenantHotel | None:
        row = await self.conn.fetchrow(
            """SELECT h.id, h.slug, c.slug AS chain_slug, h.name, h.suspended,
                      h.resource_uid, h.resource_name
               FROM hotels h JOIN chains c ON c.id = h.chain_id WHERE h.slug = $1""",
            slug,
        )
        if row is None:
            return None
        return TenantHotel(
            row["id"],
            row["slug"],
            row["chain_slug"],
            row["name"],
            row["suspended"],
            row["resource_uid"],
            row["resource_name"],
        )

    async def update_hotel(self, hotel_id: int, spec: HotelSpec) -> list[str]:
        """Make the hotel match `spec`; returns the names of the fields that changed."""
        ai = spec.assistant
        async with self.conn.transaction():
            before = await self.conn.fetchrow(
                """SELECT name, description, timezone, default_language, languages, suspended,
                          ai_enabled, ai_model, monthly_budget_usd, context_token_budget
                   FROM hotels WHERE id = $1 FOR UPDATE""",
                hotel_id,
            )
            if before is None:
                raise NotFound("no such hotel")
            wanted: dict[str, object] = {
                "name": spec.name,
                "description": spec.description,
                "timezone": spec.timezone,
                "default_language": spec.default_language,
                "languages": list(spec.languages),
                "suspended": spec.suspended,
            }
            if ai.enabled is not None:
                wanted["ai_enabled"] = ai.enabled
            if ai.model is not None:
                wanted["ai_model"] = ai.model
            if ai.monthly_budget_usd is not None:
                wanted["monthly_budget_usd"] = round(ai.monthly_budget_usd, 2)
            if ai.context_tokens is not None:
                wanted["context_token_budget"] = ai.context_tokens
            changed = [name for name, value in wanted.items() if _differs(before[name], value)]
            if changed:
                assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changed, 2))
                try:
                    await self.conn.execute(
                        f"UPDATE hotels SET {assignments} WHERE id = $1",  # noqa: S608 - our own column names
                        hotel_id,
                        *(wanted[name] for name in changed),
                    )
                except asyncpg.CheckViolationError as exc:
                    raise InvalidInput(f"invalid hotel: {exc.constraint_name}") from exc
        return changed

    async def set_owner(self, hotel_id: int, owner: Owner | None) -> None:
        await self.conn.execute(
            "UPDATE hotels SET resource_uid = $2, resource_name = $3 WHERE id = $1",
            hotel_id,
            owner.uid if owner else None,
            owner.label if owner else None,
        )

    async def update_suspended(self, hotel_id: int, *, suspended: bool) -> None:
        await self.conn.execute(
            "UPDATE hotels SET suspended = $2 WHERE id = $1 AND suspended <> $2",
            hotel_id,
            suspended,
        )

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

    async def erase_hotel(self, hotel_id: int) -> dict[str, int]:
        """Delete every row of the hotel (`hotelchat_erase_hotel`); returns how many of each."""
        rows = await self.conn.fetch("SELECT * FROM hotelchat_erase_hotel($1)", hotel_id)
        return {row["kind"]: row["deleted"] for row in rows}

    # --- WhatsApp senders -----------------------------------------------------------------

    async def senders(self, hotel_id: int) -> list[StoredSender]:
        """The hotel's numbers, routed and retired, with their tokens decrypted."""
        rows = await self.conn.fetch(
            """SELECT id, phone_number, account_sid, auth_token, auth_token_ciphertext,
                      retired_at IS NOT NULL AS retired
               FROM whatsapp_senders WHERE hotel_id = $1 ORDER BY id""",
            hotel_id,
        )
        found = []
        for row in rows:
            if row["auth_token_ciphertext"] is not None:
                cipher = self._require_cipher()
                token = cipher.decrypt(row["auth_token_ciphertext"])
                current = cipher.is_current(row["auth_token_ciphertext"])
            else:
                token, current = row["auth_token"], False
            found.append(
                StoredSender(
                    row["id"],
                    row["phone_number"],
                    row["account_sid"],
                    token,
                    current,
                    row["retired"],
                )
            )
        return found

    async def save_sender(self, hotel_id: int, sender: SenderSpec) -> int:
        """Route `sender.number` to the hotel with its account and (encrypted) token, bringing
        a retired number back. Raises `Conflict` when another hotel routes the number."""
        ciphertext = self._require_cipher().encrypt(sender.auth_token)
        try:
            async with self.conn.transaction():
                sender_id: int = await self.conn.fetchval(
                    """INSERT INTO whatsapp_senders (hotel_id, phone_number, account_sid,
                                                     auth_token_ciphertext)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (hotel_id, phone_number) DO UPDATE
                         SET account_sid = EXCLUDED.account_sid, auth_token = NULL,
                             auth_token_ciphertext = EXCLUDED.auth_token_ciphertext,
                             retired_at = NULL
                       RETURNING id""",
                    hotel_id,
                    sender.number,
                    sender.account_sid,
                    ciphertext,
                )
        except asyncpg.UniqueViolationError as exc:
            owner = await self.conn.fetchval(
                """SELECT h.slug FROM whatsapp_senders s JOIN hotels h ON h.id = s.hotel_id
                   WHERE s.phone_number = $1 AND s.retired_at IS NULL""",
                sender.number,
            )
            raise Conflict(
                f"{sender.number} is routed to hotel {owner!r}; remove it there first",
                code="number_taken",
            ) from exc
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"invalid sender: {exc.constraint_name}") from exc
        return sender_id

    async def retire_sender(self, hotel_id: int, sender_id: int) -> None:
        await self.conn.execute(
            """UPDATE whatsapp_senders SET retired_at = now()
               WHERE hotel_id = $1 AND id = $2 AND retired_at IS NULL""",
            hotel_id,
            sender_id,
        )

    async def add_whatsapp_sender(
        self, *, hotel_slug: str, phone_number: str, account_sid: str, auth_token: str
    ) -> int:
        """Route WhatsApp number `phone_number` (E.164) of hotel `hotel_slug`; see
        `save_sender`."""
        hotel = await self.hotel(hotel_slug)
        return await self.save_sender(hotel.id, SenderSpec(phone_number, account_sid, auth_token))

    async def encrypt_tokens(self) -> tuple[int, int]:
        """Encrypt tokens stored in plain text (before revision 0005) and re-encrypt those
        made with an older key; returns (encrypted, re-encrypted)."""
        cipher = self._require_cipher()
        encrypted = rotated = 0
        async with self.conn.transaction():
            rows = await self.conn.fetch(
                "SELECT id, auth_token, auth_token_ciphertext FROM whatsapp_senders FOR UPDATE"
            )
            for row in rows:
                if row["auth_token_ciphertext"] is None:
                    new, encrypted = cipher.encrypt(row["auth_token"]), encrypted + 1
                elif not cipher.is_current(row["auth_token_ciphertext"]):
                    new, rotated = cipher.rotate(row["auth_token_ciphertext"]), rotated + 1
                else:
                    continue
                await self.conn.execute(
                    """UPDATE whatsapp_senders SET auth_token = NULL, auth_token_ciphertext = $2
                       WHERE id = $1""",
                    row["id"],
                    new,
                )
        return encrypted, rotated

    async def plaintext_tokens(self) -> int:
        """How many tokens are still stored in plain text."""
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM whatsapp_senders WHERE auth_token IS NOT NULL"
        )
        return count

    # --- agents ---------------------------------------------------------------------------

    async def agent_chain(self, email: str) -> tuple[int, str] | None:
        row = await self.conn.fetchrow(
            """SELECT a.id, c.slug FROM agents a JOIN chains c ON c.id = a.chain_id
               WHERE lower(a.email) = lower($1)""",
            email,
        )
        return None if row is None else (row["id"], row["slug"])

    async def create_agent(
        self, *, chain_slug: str, email: str, name: str, password: str, change_required: bool
    ) -> int:
        """Create agent `email` in the chain (its existing row in the chain is kept as it is);
        raises `Conflict` when an agent of another chain has the email."""
        chain_id = await self._chain_id(chain_slug)
        agent_id: int | None = await self.conn.fetchval(
            """INSERT INTO agents (chain_id, email, display_name, password_hash,
                                   password_change_required)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (lower(email)) DO UPDATE SET email = agents.email
                 WHERE agents.chain_id = EXCLUDED.chain_id
               RETURNING id""",
            chain_id,
            email,
            name,
            hash_password(password),
            change_required,
        )
        if agent_id is None:
            raise Conflict(
                f"{email} is an agent of another chain; agents belong to one chain",
                code="email_taken",
            )
        return agent_id

    async def rename_agent(self, agent_id: int, name: str) -> None:
        await self.conn.execute(
            "UPDATE agents SET display_name = $2 WHERE id = $1 AND display_name <> $2",
            agent_id,
            name,
        )

    async def memberships(self, hotel_id: int) -> list[StoredMembership]:
        rows = await self.conn.fetch(
            """SELECT a.id, lower(a.email) AS email, a.display_name, ah.role
               FROM agent_hotels ah JOIN agents a ON a.id = ah.agent_id
               WHERE ah.hotel_id = $1 ORDER BY a.id""",
            hotel_id,
        )
        return [StoredMembership(r["id"], r["email"], r["display_name"], r["role"]) for r in rows]

    async def set_membership(self, agent_id: int, hotel_id: int, role: str) -> None:
        await self.conn.execute(
            """INSERT INTO agent_hotels (agent_id, hotel_id, role) VALUES ($1, $2, $3)
               ON CONFLICT (agent_id, hotel_id) DO UPDATE SET role = EXCLUDED.role
                 WHERE agent_hotels.role <> EXCLUDED.role""",
            agent_id,
            hotel_id,
            role,
        )

    async def remove_membership(self, agent_id: int, hotel_id: int) -> None:
        async with self.conn.transaction():
            await self.conn.execute(
                "DELETE FROM agent_hotels WHERE agent_id = $1 AND hotel_id = $2",
                agent_id,
                hotel_id,
            )
            await self.conn.execute(
                "DELETE FROM agent_sessions WHERE agent_id = $1 AND hotel_id = $2",
                agent_id,
                hotel_id,
            )

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
        """Create (or update the name, password and hotels of) agent `email` in the chain."""
        chain_id = await self._chain_id(chain_slug)
        hotels = [await self.hotel(slug) for slug in hotel_slugs]
        if any(h.chain_slug != chain_slug for h in hotels):
            raise InvalidInput("an agent's hotels must belong to the agent's chain")
        async with self.conn.transaction():
            agent_id: int = await self.conn.fetchval(
                """INSERT INTO agents (chain_id, email, display_name, password_hash)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (lower(email)) DO UPDATE
                     SET display_name = EXCLUDED.display_name,
                         password_hash = EXCLUDED.password_hash,
                         password_change_required = false
                     WHERE agents.chain_id = EXCLUDED.chain_id
                   RETURNING id""",
                chain_id,
                email,
                display_name,
                hash_password(password),
            )
            if agent_id is None:
                raise Conflict("an agent of another chain has this email", code="email_taken")
            for hotel in hotels:
                await self.set_membership(agent_id, hotel.id, role)
        return agent_id

    # --- knowledge and reservations (the demo's seeding) ----------------------------------

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

    async def add_templates(self, *, hotel_slug: str, templates: Sequence[Template]) -> int:
        """Add the hotel's WhatsApp templates that it lacks (by ContentSid), as hand-made ones;
        returns how many were added. Raises `NotFound` (no such hotel)."""
        hotel = await self.hotel(hotel_slug)
        added = 0
        async with self.conn.transaction():
            for t in templates:
                done = await self.conn.execute(
                    """INSERT INTO whatsapp_templates (hotel_id, content_sid, friendly_name,
                         language, body, variables, approval_status, source)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, 'manual')
                       ON CONFLICT (hotel_id, content_sid) DO NOTHING""",
                    hotel.id, t.content_sid, t.friendly_name, t.language, t.body,
                    json.dumps(dict(t.variables), ensure_ascii=False), t.approval_status,
                )  # fmt: skip
                added += done == "INSERT 0 1"
        return added


def _differs(stored: object, wanted: object) -> bool:
    if stored is None or wanted is None:
        return stored is not wanted
    if isinstance(wanted, float) and not isinstance(stored, bool):
        return abs(float(stored) - wanted) > 1e-9  # type: ignore[arg-type]
    return stored != wanted


class ProvisioningPool:
    """`Provisioning` on connections of a pool (the operator's, which runs for days): each use
    holds one connection, for as long as the `async with` lasts, never across Kubernetes I/O
    by design of the caller."""

    def __init__(self, db: Database, cipher: TokenCipher, *, acquire_timeout: float) -> None:
        self.db, self.cipher, self.acquire_timeout = db, cipher, acquire_timeout

    @asynccontextmanager
    async def provisioning(self) -> AsyncIterator[Provisioning]:
        """Raises `Unavailable` when no connection frees up within `acquire_timeout`."""
        try:
            async with self.db.pool.acquire(timeout=self.acquire_timeout) as conn:
                yield Provisioning(conn, self.cipher)
        except (TimeoutError, OSError) as exc:
            raise Unavailable("PostgreSQL is busy or unreachable") from exc
        except asyncpg.PostgresConnectionError as exc:
            raise Unavailable("PostgreSQL dropped the connection") from exc


@asynccontextmanager
async def open_provisioning(
    dsn: str, cipher: TokenCipher | None = None
) -> AsyncIterator[Provisioning]:
    """A `Provisioning` on one connection to `dsn` (the schema owner's or the operator's URL),
    closed on exit. Raises `Unavailable` when PostgreSQL cannot be reached within 10 seconds."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10, command_timeout=60)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise Unavailable("PostgreSQL is not reachable") from exc
    try:
        yield Provisioning(conn, cipher)
    finally:
        await conn.close()
