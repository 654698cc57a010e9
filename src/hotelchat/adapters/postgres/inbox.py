"""The SQL behind `services.ports.Inbox` (what agents read and do) and `Agents` (logins and
sessions).

Inbox methods run in one hotel's tenant transaction, so another hotel's conversation id simply
finds nothing. Ownership changes lock the conversation row for the length of one short
transaction and apply the pure rules of `domain.conversation`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import asyncpg

from hotelchat.adapters.postgres.database import TENANT_SETTING, Connection, Database
from hotelchat.adapters.postgres.store import media_item
from hotelchat.domain.conversation import Action, Ownership, apply
from hotelchat.domain.errors import Conflict, NotFound
from hotelchat.domain.model import (
    Author,
    Channel,
    ConversationState,
    DeliveryStatus,
    Responder,
    whatsapp_window_open,
)
from hotelchat.services.ports import (
    AgentCredentials,
    AgentMessage,
    AgentSession,
    ConversationSummary,
    InboundRecord,
    Membership,
    MessageView,
    NewMedia,
    WebGuest,
)

PREVIEW_CHARS = 120

SUMMARY = """
SELECT c.id, c.hotel_id, c.channel, c.state, c.assigned_agent_id, a.display_name AS agent_name,
       g.display_name AS guest_name, g.phone_number AS guest_phone,
       g.language AS guest_language, c.last_message_at, c.last_inbound_at, c.handoff_reason,
       c.awaiting_human_since, c.window_closed_at, left(lm.body, $2) AS preview,
       lm.author AS preview_author,
       CASE WHEN gc.opted_out THEN gc.changed_at END AS opted_out_at,
       (SELECT count(*) FROM messages u
        WHERE u.hotel_id = c.hotel_id AND u.conversation_id = c.id
          AND u.direction = 'inbound' AND u.id > c.agent_read_up_to) AS unread
FROM conversations c
JOIN guests g ON g.hotel_id = c.hotel_id AND g.id = c.guest_id
LEFT JOIN agents a ON a.id = c.assigned_agent_id
LEFT JOIN guest_consents gc ON gc.hotel_id = c.hotel_id AND gc.guest_id = c.guest_id
LEFT JOIN LATERAL (
  SELECT m.body, m.author FROM messages m
  WHERE m.hotel_id = c.hotel_id AND m.conversation_id = c.id AND m.direction <> 'internal'
  ORDER BY m.id DESC LIMIT 1) lm ON true
WHERE c.hotel_id = $1
"""

MESSAGE = """
SELECT m.id, m.conversation_id, m.direction, m.author, m.body, m.status, m.responder,
       a.display_name AS agent_name, m.created_at, m.error_code, m.sources,
       m.tool_calls,
       (SELECT json_agg(json_build_object('id', d.id, 'position', d.position,
                 'content_type', d.content_type, 'state', d.state, 'error', d.error,
                 'size_bytes', d.size_bytes, 'filename', d.filename) ORDER BY d.position)
        FROM media d WHERE d.hotel_id = m.hotel_id AND d.message_id = m.id) AS media,
       (SELECT array_agg(p.status ORDER BY p.part_index) FROM message_parts p
        WHERE p.hotel_id = m.hotel_id AND p.message_id = m.id) AS parts
FROM messages m LEFT JOIN agents a ON a.id = m.agent_id
WHERE m.hotel_id = $1 AND m.conversation_id = $2
"""


def summary(row: asyncpg.Record) -> ConversationSummary:
    return ConversationSummary(
        id=row["id"],
        hotel_id=row["hotel_id"],
        channel=Channel(row["channel"]),
        state=ConversationState(row["state"]),
        assigned_agent_id=row["assigned_agent_id"],
        assigned_agent_name=row["agent_name"],
        guest_name=row["guest_name"],
        guest_phone=row["guest_phone"],
        guest_language=row["guest_language"],
        last_message_at=row["last_message_at"],
        last_inbound_at=row["last_inbound_at"],
        preview=row["preview"] or "",
        preview_author=Author(row["preview_author"]) if row["preview_author"] else None,
        unread=row["unread"],
        handoff_reason=row["handoff_reason"],
        awaiting_human_since=row["awaiting_human_since"],
        opted_out_at=row.get("opted_out_at"),
        window_closed_at=row["window_closed_at"],
    )


def message_view(row: asyncpg.Record) -> MessageView:
    return MessageView(
        id=row["id"],
        conversation_id=row["conversation_id"],
        direction=row["direction"],
        author=Author(row["author"]),
        body=row["body"],
        status=DeliveryStatus(row["status"]),
        responder=Responder(row["responder"]) if row["responder"] else None,
        agent_name=row["agent_name"],
        created_at=row["created_at"],
        error_code=row["error_code"],
        sources=tuple(json.loads(row["sources"])) if row["sources"] else (),
        tool_calls=tuple(json.loads(row["tool_calls"])) if row["tool_calls"] else (),
        media=tuple(media_item({**d, "message_id": row["id"]}) for d in json.loads(row["media"]))
        if row["media"]
        else (),
        parts=tuple(DeliveryStatus(s) for s in row.get("parts") or ()),
    )


async def take_for_agent_reply(conn: Connection, conversation_id: int, after: Ownership) -> None:
    """An agent's reply (free-form or a template) gives the conversation its new ownership
    `after`, and no pending inbound message gets an automated reply any more."""
    await conn.execute(
        """UPDATE conversations SET state = $2, assigned_agent_id = $3,
             awaiting_human_since = NULL, last_message_at = now()
           WHERE id = $1""",
        conversation_id,
        after.state.value,
        after.agent_id,
    )
    await conn.execute(
        """UPDATE messages SET reply_state = 'skipped', reply_claimed_until = NULL
           WHERE conversation_id = $1 AND reply_state = 'pending'""",
        conversation_id,
    )


async def attach_media(
    conn: Connection, hotel_id: int, message_id: int, attachments: Sequence[NewMedia]
) -> None:
    """Rows for files already in object storage, attached to a message being stored."""
    await conn.executemany(
        """INSERT INTO media (hotel_id, message_id, position, content_type, filename,
                              size_bytes, storage_key, state, stored_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'stored', now())""",
        [
            (hotel_id, message_id, n, a.content_type, a.filename, a.size_bytes, a.storage_key)
            for n, a in enumerate(attachments)
        ],
    )


async def fetch_summary(
    conn: Connection, hotel_id: int, conversation_id: int
) -> ConversationSummary:
    row = await conn.fetchrow(SUMMARY + " AND c.id = $3", hotel_id, PREVIEW_CHARS, conversation_id)
    if row is None:
        raise NotFound("no such conversation")
    return summary(row)


class PostgresInbox:
    """`services.ports.Inbox` on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def conversations(
        self, hotel_id: int, *, states: Sequence[ConversationState] | None, limit: int
    ) -> list[ConversationSummary]:
        """The hotel's conversations, most recent message first; `limit` at most."""

        async def work(conn: Connection) -> list[ConversationSummary]:
            wanted = [s.value for s in states] if states else None
            rows = await conn.fetch(
                SUMMARY + " AND ($3::text[] IS NULL OR c.state = ANY($3))"
                " ORDER BY c.last_message_at DESC, c.id DESC LIMIT $4",
                hotel_id,
                PREVIEW_CHARS,
                wanted,
                limit,
            )
            return [summary(row) for row in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def conversation(self, hotel_id: int, conversation_id: int) -> ConversationSummary | None:
        async def work(conn: Connection) -> ConversationSummary | None:
            try:
                return await fetch_summary(conn, hotel_id, conversation_id)
            except NotFound:
                return None

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def messages(
        self,
        hotel_id: int,
        conversation_id: int,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        include_internal: bool,
    ) -> list[MessageView]:
        """Up to `limit` messages, oldest first: those after id `after` (catching up), else
        those before id `before` (paging back), else the latest."""

        async def work(conn: Connection) -> list[MessageView]:
            visible = "" if include_internal else " AND m.direction <> 'internal'"
            if after is not None:
                rows = await conn.fetch(
                    MESSAGE + visible + " AND m.id > $3 ORDER BY m.id LIMIT $4",
                    hotel_id,
                    conversation_id,
                    after,
                    limit,
                )
            else:
                rows = await conn.fetch(
                    "SELECT * FROM (" + MESSAGE + visible + " AND m.id < $3"  # noqa: S608 - constants
                    " ORDER BY m.id DESC LIMIT $4) page ORDER BY id",
                    hotel_id,
                    conversation_id,
                    before if before is not None else 2**62,
                    limit,
                )
            return [message_view(row) for row in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def mark_read(self, hotel_id: int, conversation_id: int, up_to: int) -> None:
        """Agents have seen the conversation up to message `up_to` (never moves back)."""

        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE conversations SET agent_read_up_to = greatest(agent_read_up_to, $2)
                   WHERE id = $1""",
                conversation_id,
                up_to,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def change_ownership(
        self, hotel_id: int, conversation_id: int, agent_id: int, action: Action
    ) -> ConversationSummary:
        """Apply `action` by `agent_id`; raises `NotFound` or `Conflict`."""

        async def work(conn: Connection) -> ConversationSummary:
            current = await _lock_ownership(conn, conversation_id)
            after = apply(current, action, agent_id)
            await conn.execute(
                """
                UPDATE conversations SET state = $2, assigned_agent_id = $3,
                  awaiting_human_since = CASE WHEN $2 IN ('ai', 'resolved') THEN NULL
                                              ELSE awaiting_human_since END,
                  handoff_reason = CASE WHEN $2 = 'ai' THEN NULL ELSE handoff_reason END
                WHERE id = $1
                """,
                conversation_id,
                after.state.value,
                after.agent_id,
            )
            if after.state is not ConversationState.AI:
                # The assistant stops at once: a reply it still owes is not sent.
                await conn.execute(
                    """UPDATE messages SET reply_state = 'skipped', reply_claimed_until = NULL
                       WHERE conversation_id = $1 AND reply_state = 'pending'""",
                    conversation_id,
                )
            return await fetch_summary(conn, hotel_id, conversation_id)

        return await self.db.tenant(hotel_id, work, idempotent=False)

    async def add_agent_message(
        self,
        hotel_id: int,
        conversation_id: int,
        agent_id: int,
        *,
        body: str,
        client_id: str,
        internal: bool,
        attachments: Sequence[NewMedia] = (),
    ) -> AgentMessage:
        """Store an agent's reply (taking the conversation over) or internal note, once per
        `client_id`. Raises `NotFound`, or `Conflict` when another agent owns the conversation or
        WhatsApp's 24-hour window is closed."""

        async def work(conn: Connection) -> AgentMessage:
            existing = await conn.fetchval(
                "SELECT id FROM messages WHERE conversation_id = $1 AND client_id = $2",
                conversation_id,
                uuid.UUID(client_id),
            )
            if existing is not None:
                return AgentMessage(
                    existing, False, await fetch_summary(conn, hotel_id, conversation_id)
                )
            current = await _lock_ownership(conn, conversation_id)
            waited = None
            if not internal:
                after = apply(current, Action.REPLY, agent_id)
                row = await conn.fetchrow(
                    """SELECT channel, last_inbound_at, window_closed_at, now() AS now,
                              extract(epoch FROM now() - awaiting_human_since) AS waited
                       FROM conversations WHERE id = $1""",
                    conversation_id,
                )
                assert row is not None
                channel = Channel(row["channel"])
                if channel is Channel.WHATSAPP and not whatsapp_window_open(
                    row["last_inbound_at"], row["now"], row["window_closed_at"]
                ):
                    raise Conflict(
                        "WhatsApp's 24-hour window is closed: the guest must write first",
                        code="whatsapp_window_closed",
                    )
                waited = float(row["waited"]) if row["waited"] is not None else None
                await take_for_agent_reply(conn, conversation_id, after)
            message_id = await conn.fetchval(
                """
                INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status,
                                      agent_id, client_id)
                VALUES ($1, $2, $3, 'agent', $4, $5, $6, $7)
                RETURNING id
                """,
                hotel_id,
                conversation_id,
                "internal" if internal else "outbound",
                body,
                "received" if internal else "pending",
                agent_id,
                uuid.UUID(client_id),
            )
            if attachments:
                await attach_media(conn, hotel_id, message_id, attachments)
            return AgentMessage(
                message_id, True, await fetch_summary(conn, hotel_id, conversation_id), waited
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    # --- web chat -------------------------------------------------------------------------------

    async def web_guest(
        self, hotel_id: int, web_id: str | None, display_name: str | None
    ) -> WebGuest:
        """The web-chat guest `web_id` with their conversation; a new guest when `web_id` is
        None. Raises `NotFound` for a `web_id` this hotel does not know."""

        async def work(conn: Connection) -> WebGuest:
            if web_id is None:
                guest = await conn.fetchrow(
                    """INSERT INTO guests (hotel_id, web_id, display_name)
                       VALUES ($1, gen_random_uuid(), $2) RETURNING id, web_id, display_name""",
                    hotel_id,
                    display_name,
                )
            else:
                guest = await conn.fetchrow(
                    """UPDATE guests SET last_seen_at = now(),
                         display_name = COALESCE($3, display_name)
                       WHERE hotel_id = $1 AND web_id = $2
                       RETURNING id, web_id, display_name""",
                    hotel_id,
                    uuid.UUID(web_id),
                    display_name,
                )
            if guest is None:
                raise NotFound("unknown guest")
            conversation_id = await conn.fetchval(
                """INSERT INTO conversations (hotel_id, guest_id, channel) VALUES ($1, $2, 'web')
                   ON CONFLICT (hotel_id, guest_id, channel) DO UPDATE SET channel = 'web'
                   RETURNING id""",
                hotel_id,
                guest["id"],
            )
            slug = await conn.fetchval("SELECT slug FROM hotels WHERE id = $1", hotel_id)
            return WebGuest(
                hotel_id,
                slug,
                str(guest["web_id"]),
                guest["id"],
                conversation_id,
                guest["display_name"],
            )

        return await self.db.tenant(hotel_id, work, idempotent=web_id is not None)

    async def record_inbound_web(
        self,
        guest: WebGuest,
        *,
        body: str,
        client_id: str,
        language: str | None,
        attachments: Sequence[NewMedia] = (),
    ) -> InboundRecord:
        """Store a web-chat guest's message once per `client_id`, reopening a resolved
        conversation for the assistant."""

        async def work(conn: Connection) -> InboundRecord:
            existing = await conn.fetchrow(
                """SELECT id, reply_state FROM messages
                   WHERE conversation_id = $1 AND client_id = $2""",
                guest.conversation_id,
                uuid.UUID(client_id),
            )
            if existing is not None:
                return InboundRecord(
                    existing["id"],
                    guest.conversation_id,
                    duplicate=True,
                    awaiting_reply=existing["reply_state"] == "pending",
                )
            await conn.execute(
                """UPDATE conversations SET last_inbound_at = now(), last_message_at = now(),
                     state = CASE WHEN state = 'resolved' THEN 'ai' ELSE state END
                   WHERE id = $1""",
                guest.conversation_id,
            )
            if language is not None:
                await conn.execute(
                    "UPDATE guests SET language = $2 WHERE id = $1", guest.guest_id, language
                )
            message_id = await conn.fetchval(
                """INSERT INTO messages (hotel_id, conversation_id, direction, author, body,
                                         status, reply_state, language, client_id)
                   VALUES ($1, $2, 'inbound', 'guest', $3, 'received', 'pending', $4, $5)
                   RETURNING id""",
                guest.hotel_id,
                guest.conversation_id,
                body,
                language,
                uuid.UUID(client_id),
            )
            if attachments:
                await attach_media(conn, guest.hotel_id, message_id, attachments)
            return InboundRecord(message_id, guest.conversation_id, False, True)

        return await self.db.tenant(guest.hotel_id, work, idempotent=True)


async def _lock_ownership(conn: Connection, conversation_id: int) -> Ownership:
    row = await conn.fetchrow(
        "SELECT state, assigned_agent_id FROM conversations WHERE id = $1 FOR UPDATE",
        conversation_id,
    )
    if row is None:
        raise NotFound("no such conversation")
    return Ownership(ConversationState(row["state"]), row["assigned_agent_id"])


class PostgresAgents:
    """`services.ports.Agents` on PostgreSQL (no tenant: sessions precede the hotel choice)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def credentials(self, email: str) -> AgentCredentials | None:
        async def work(conn: Connection) -> AgentCredentials | None:
            row = await conn.fetchrow("SELECT * FROM hotelchat_agent_login($1)", email)
            if row is None:
                return None
            return AgentCredentials(
                row["agent_id"], row["password_hash"], row["disabled"], row["display_name"]
            )

        return await self.db.platform(work, idempotent=True)

    async def memberships(self, agent_id: int) -> list[Membership]:
        async def work(conn: Connection) -> list[Membership]:
            rows = await conn.fetch("SELECT * FROM hotelchat_agent_hotels($1)", agent_id)
            return [Membership(r["hotel_id"], r["slug"], r["name"], r["role"]) for r in rows]

        return await self.db.platform(work, idempotent=True)

    async def create_session(
        self, token_hash: bytes, agent_id: int, hotel_id: int, csrf_token: str, ttl_seconds: float
    ) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """INSERT INTO agent_sessions (token_hash, agent_id, hotel_id, csrf_token,
                                               expires_at)
                   VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
                token_hash,
                agent_id,
                hotel_id,
                csrf_token,
                ttl_seconds,
            )
            # Old sessions go when their agent logs in again; no sweeper needed.
            await conn.execute(
                "DELETE FROM agent_sessions WHERE agent_id = $1 AND expires_at < now()", agent_id
            )

        await self.db.platform(work, idempotent=True)

    async def session(self, token_hash: bytes, ttl_seconds: float) -> AgentSession | None:
        """The live session for `token_hash`, extended to `ttl_seconds` from now (sliding);
        None when unknown, expired, or the agent was disabled or removed from that hotel."""

        async def work(conn: Connection) -> AgentSession | None:
            row = await conn.fetchrow(
                """UPDATE agent_sessions SET last_seen_at = now(),
                     expires_at = now() + make_interval(secs => $2)
                   WHERE token_hash = $1 AND expires_at > now()
                   RETURNING agent_id, hotel_id, csrf_token, expires_at""",
                token_hash,
                ttl_seconds,
            )
            if row is None:
                return None
            # Within the session's hotel, row-level security shows the agent only while they
            # are a member of it: removing an agent from a hotel ends their sessions there.
            await conn.execute(
                "SELECT set_config($1, $2, true)", TENANT_SETTING, str(row["hotel_id"])
            )
            agent = await conn.fetchrow(
                """SELECT a.display_name, a.disabled, a.password_change_required, h.slug
                   FROM agents a, hotels h WHERE a.id = $1 AND h.id = $2""",
                row["agent_id"],
                row["hotel_id"],
            )
            if agent is None or agent["disabled"]:
                return None
            return AgentSession(
                row["agent_id"],
                agent["display_name"],
                row["hotel_id"],
                agent["slug"],
                row["csrf_token"],
                row["expires_at"],
                agent["password_change_required"],
            )

        return await self.db.platform(work, idempotent=True)

    async def password_hash(self, agent_id: int) -> str | None:
        """The agent's password hash (through the login door: agents are not a tenant's)."""

        async def work(conn: Connection) -> str | None:
            found: str | None = await conn.fetchval(
                "SELECT password_hash FROM hotelchat_agent_password($1)", agent_id
            )
            return found

        return await self.db.platform(work, idempotent=True)

    async def change_password(self, agent_id: int, password_hash: str) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute("SELECT hotelchat_change_agent_password($1, $2)", agent_id,
                               password_hash)  # fmt: skip

        await self.db.platform(work, idempotent=True)

    async def switch_hotel(self, token_hash: bytes, hotel_id: int) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                "UPDATE agent_sessions SET hotel_id = $2 WHERE token_hash = $1",
                token_hash,
                hotel_id,
            )

        await self.db.platform(work, idempotent=True)

    async def end_session(self, token_hash: bytes) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute("DELETE FROM agent_sessions WHERE token_hash = $1", token_hash)

        await self.db.platform(work, idempotent=True)
