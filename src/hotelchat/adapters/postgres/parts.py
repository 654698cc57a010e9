"""The SQL behind `services.ports.MessageParts`: the parts of long outbound messages, each with
its own MessageSid and delivery status. Each method is one short transaction; the message's send
lease (`messages.send_claimed_until`) is what the sending job holds across Twilio calls."""

from __future__ import annotations

from collections.abc import Sequence

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.domain.model import DeliveryStatus
from hotelchat.services.ports import PartState, SentMessage, StatusUpdate

# The message's status from its parts': a failed part fails it; a part not yet with Twilio
# keeps it `sending`; else the least advanced part's status.
AGGREGATE = """
    SELECT CASE
      WHEN bool_or(status IN ('failed', 'undelivered'))
        THEN (array_agg(status ORDER BY part_index)
              FILTER (WHERE status IN ('failed', 'undelivered')))[1]
      WHEN bool_or(status IN ('pending', 'sending')) THEN 'sending'
      ELSE (array_agg(status ORDER BY hotelchat_status_rank(status), part_index))[1]
    END
    FROM message_parts WHERE message_id = $1
"""


def _part(row: object) -> PartState:
    r = row  # asyncpg.Record
    return PartState(
        index=r["part_index"],  # type: ignore[index]
        body=r["body"],  # type: ignore[index]
        sid=r["provider_sid"],  # type: ignore[index]
        status=DeliveryStatus(r["status"]),  # type: ignore[index]
        attempted_at=r["send_attempted_at"],  # type: ignore[index]
    )


class PostgresMessageParts:
    """`MessageParts` on PostgreSQL with row-level security."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def prepare(
        self, hotel_id: int, message_id: int, bodies: Sequence[str]
    ) -> list[PartState]:
        async def work(conn: Connection) -> list[PartState]:
            await conn.execute(
                """INSERT INTO message_parts (hotel_id, message_id, part_index, body)
                   SELECT $1, $2, i - 1, b FROM unnest($3::text[]) WITH ORDINALITY AS t(b, i)
                   WHERE NOT EXISTS (SELECT 1 FROM message_parts WHERE message_id = $2)
                   ON CONFLICT DO NOTHING""",
                hotel_id,
                message_id,
                list(bodies),
            )
            rows = await conn.fetch(
                """SELECT part_index, body, provider_sid, status, send_attempted_at
                   FROM message_parts WHERE message_id = $1 ORDER BY part_index""",
                message_id,
            )
            return [_part(r) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def begin(
        self, hotel_id: int, message_id: int, index: int, *, lease_seconds: float
    ) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE message_parts SET status = 'sending',
                     send_attempted_at = COALESCE(send_attempted_at, now())
                   WHERE message_id = $1 AND part_index = $2 AND provider_sid IS NULL""",
                message_id,
                index,
            )
            await conn.execute(
                """UPDATE messages SET send_claimed_until = now() + make_interval(secs => $2)
                   WHERE id = $1""",
                message_id,
                lease_seconds,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def record_sent(
        self, hotel_id: int, message_id: int, index: int, sent: SentMessage
    ) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE message_parts SET provider_sid = $3,
                     status = CASE WHEN hotelchat_status_rank($4) > hotelchat_status_rank(status)
                                   THEN $4 ELSE status END,
                     sent_at = COALESCE(sent_at, now())
                   WHERE message_id = $1 AND part_index = $2
                     AND (provider_sid IS NULL OR provider_sid = $3)""",
                message_id,
                index,
                sent.sid,
                sent.status.value,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def release(
        self, hotel_id: int, message_id: int, index: int, *, maybe_sent: bool
    ) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE message_parts SET status = 'pending',
                     send_attempted_at = CASE WHEN $3 THEN send_attempted_at END
                   WHERE message_id = $1 AND part_index = $2 AND provider_sid IS NULL""",
                message_id,
                index,
                maybe_sent,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def finish(self, hotel_id: int, message_id: int) -> DeliveryStatus:
        async def work(conn: Connection) -> DeliveryStatus:
            status = await conn.fetchval(AGGREGATE, message_id)
            row = await conn.fetchrow(
                """UPDATE messages SET
                     status = CASE WHEN hotelchat_status_rank($2) > hotelchat_status_rank(status)
                                   THEN $2 ELSE status END,
                     sent_at = COALESCE(sent_at, now()), send_claimed_until = NULL
                   WHERE id = $1 RETURNING status""",
                message_id,
                status,
            )
            return DeliveryStatus(row["status"] if row is not None else status)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def statuses(
        self, hotel_id: int, message_ids: Sequence[int]
    ) -> dict[int, list[DeliveryStatus]]:
        async def work(conn: Connection) -> dict[int, list[DeliveryStatus]]:
            rows = await conn.fetch(
                """SELECT message_id, array_agg(status ORDER BY part_index) AS statuses
                   FROM message_parts WHERE message_id = ANY($1::bigint[])
                   GROUP BY message_id""",
                list(message_ids),
            )
            return {r["message_id"]: [DeliveryStatus(s) for s in r["statuses"]] for r in rows}

        if not message_ids:
            return {}
        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def apply_status(
        self,
        hotel_id: int,
        *,
        message_id: int,
        index: int,
        sid: str,
        status: DeliveryStatus,
        error_code: str | None,
    ) -> StatusUpdate | None:
        async def work(conn: Connection) -> StatusUpdate | None:
            moved = await conn.fetchval(
                """UPDATE message_parts SET status = $4,
                     provider_sid = COALESCE(provider_sid, $3),
                     error_code = COALESCE($5, error_code),
                     delivered_at = CASE WHEN $4 IN ('delivered', 'read')
                                         THEN COALESCE(delivered_at, now()) ELSE delivered_at END,
                     read_at = CASE WHEN $4 = 'read' THEN COALESCE(read_at, now()) ELSE read_at END
                   WHERE message_id = $1 AND part_index = $2
                     AND (provider_sid IS NULL OR provider_sid = $3)
                     AND hotelchat_status_rank($4) > hotelchat_status_rank(status)
                   RETURNING part_index""",
                message_id,
                index,
                sid,
                status.value,
                error_code,
            )
            if moved is None:
                return None
            aggregate = await conn.fetchval(AGGREGATE, message_id)
            row = await conn.fetchrow(
                """UPDATE messages SET status = $2,
                     error_code = CASE WHEN $2 IN ('failed', 'undelivered')
                                       THEN COALESCE($3, error_code) ELSE error_code END,
                     delivered_at = CASE WHEN $2 IN ('delivered', 'read')
                                         THEN COALESCE(delivered_at, now()) ELSE delivered_at END,
                     read_at = CASE WHEN $2 = 'read' THEN COALESCE(read_at, now()) ELSE read_at END
                   WHERE id = $1 AND direction = 'outbound'
                     AND status NOT IN ('pending', 'sending')
                     AND hotelchat_status_rank($2) > hotelchat_status_rank(status)
                   RETURNING id, conversation_id, status""",
                message_id,
                aggregate,
                error_code,
            )
            conversation_id = await conn.fetchval(
                "SELECT conversation_id FROM messages WHERE id = $1", message_id
            )
            handed_off = False
            if row is not None and row["status"] in ("failed", "undelivered"):
                handed_off = (
                    await conn.execute(
                        """UPDATE conversations SET state = 'needs_human', handoff_at = now(),
                             awaiting_human_since = COALESCE(awaiting_human_since, now()),
                             handoff_reason = 'a reply could not be delivered'
                           WHERE id = $1 AND state = 'ai'""",
                        conversation_id,
                    )
                    == "UPDATE 1"
                )
            current = (
                row["status"]
                if row is not None
                else await conn.fetchval("SELECT status FROM messages WHERE id = $1", message_id)
            )
            return StatusUpdate(message_id, conversation_id, DeliveryStatus(current), handed_off)

        return await self.db.tenant(hotel_id, work, idempotent=True)
