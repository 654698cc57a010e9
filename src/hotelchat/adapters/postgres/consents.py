"""The SQL behind `services.ports.Consents`: guests' opt-outs of proactive messages, one row per
guest and hotel (row-level security keeps each hotel's to itself)."""

from __future__ import annotations

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.services.ports import Consent, ConsentChanged, ConsentUnchanged, Gone


class PostgresConsents:
    """`Consents` on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def consent(self, hotel_id: int, guest_id: int) -> Consent:
        async def work(conn: Connection) -> Consent:
            row = await conn.fetchrow(
                "SELECT opted_out, changed_at, keyword FROM guest_consents WHERE guest_id = $1",
                guest_id,
            )
            if row is None:
                return Consent(opted_out=False)
            return Consent(row["opted_out"], row["changed_at"], row["keyword"])

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def number_opted_out(self, hotel_id: int, phone_number: str) -> bool:
        async def work(conn: Connection) -> bool:
            found: bool = await conn.fetchval(
                """SELECT EXISTS (
                     SELECT 1 FROM guest_consents gc
                     JOIN guests g ON g.hotel_id = gc.hotel_id AND g.id = gc.guest_id
                     WHERE g.phone_number = $1 AND gc.opted_out)""",
                phone_number,
            )
            return found

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def inbound_keyword_candidate(
        self, hotel_id: int, message_id: int
    ) -> tuple[str, str | None] | None:
        async def work(conn: Connection) -> tuple[str, str | None] | None:
            row = await conn.fetchrow(
                """SELECT m.body, COALESCE(m.language, g.language) AS language
                   FROM messages m
                   JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                   JOIN guests g ON g.hotel_id = c.hotel_id AND g.id = c.guest_id
                   WHERE m.id = $1 AND m.direction = 'inbound' AND m.reply_state = 'pending'
                     AND c.channel = 'whatsapp'""",
                message_id,
            )
            return None if row is None else (row["body"], row["language"])

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def apply_keyword(
        self,
        hotel_id: int,
        message_id: int,
        *,
        opted_out: bool,
        keyword: str,
        confirmation: str,
        language: str,
    ) -> ConsentChanged | ConsentUnchanged | Gone:
        async def work(conn: Connection) -> ConsentChanged | ConsentUnchanged | Gone:
            row = await conn.fetchrow(
                """SELECT m.conversation_id, m.reply_state, c.guest_id
                   FROM messages m
                   JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                   WHERE m.id = $1 AND m.direction = 'inbound'
                   FOR UPDATE OF m""",
                message_id,
            )
            if row is None:
                return Gone()
            existing = await conn.fetchrow(
                """SELECT id, status FROM messages
                   WHERE in_reply_to = $1 AND author IN ('ai', 'system')""",
                message_id,
            )
            if existing is not None:  # a replayed job: the confirmation is stored already
                return ConsentUnchanged(
                    row["conversation_id"],
                    existing["id"],
                    needs_send=existing["status"] in ("pending", "sending"),
                )
            if row["reply_state"] != "pending":
                return ConsentUnchanged(row["conversation_id"])
            # Atomic under concurrency: two keyword messages at once both reach the upsert, and
            # only the one that changes the state gets a row back. Opting in with no row (never
            # opted out) changes nothing.
            changed = await conn.fetchval(
                """INSERT INTO guest_consents (hotel_id, guest_id, opted_out, keyword, message_id)
                   SELECT $1, $2, $3, $4, $5
                   WHERE $3 OR EXISTS (SELECT 1 FROM guest_consents
                                       WHERE guest_id = $2 AND opted_out)
                   ON CONFLICT (hotel_id, guest_id) DO UPDATE SET
                     opted_out = EXCLUDED.opted_out, changed_at = now(),
                     keyword = EXCLUDED.keyword, message_id = EXCLUDED.message_id
                   WHERE guest_consents.opted_out IS DISTINCT FROM EXCLUDED.opted_out
                   RETURNING true""",
                hotel_id,
                row["guest_id"],
                opted_out,
                keyword,
                message_id,
            )
            if not changed:
                await conn.execute(
                    """UPDATE messages SET reply_state = 'skipped', reply_claimed_until = NULL
                       WHERE id = $1""",
                    message_id,
                )
                return ConsentUnchanged(row["conversation_id"])
            reply_id = await conn.fetchval(
                """INSERT INTO messages (hotel_id, conversation_id, direction, author, body,
                                         status, responder, in_reply_to, language)
                   VALUES ($1, $2, 'outbound', 'system', $3, 'pending', 'consent', $4, $5)
                   RETURNING id""",
                hotel_id,
                row["conversation_id"],
                confirmation,
                message_id,
                language,
            )
            await conn.execute(
                """UPDATE messages SET reply_state = 'answered', reply_claimed_until = NULL
                   WHERE id = $1""",
                message_id,
            )
            await conn.execute(
                "UPDATE conversations SET last_message_at = now() WHERE id = $1",
                row["conversation_id"],
            )
            return ConsentChanged(reply_id, row["conversation_id"], opted_out)

        return await self.db.tenant(hotel_id, work, idempotent=True)
