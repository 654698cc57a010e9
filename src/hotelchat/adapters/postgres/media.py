"""The SQL behind `services.ports.MediaStore`: media rows of one hotel, leased by the download
job with a timestamp (never a lock held across the download)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import asyncpg

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.adapters.postgres.store import SENDER_COLUMNS, media_item
from hotelchat.domain.media import MediaState
from hotelchat.domain.model import SenderRoute
from hotelchat.services.ports import MediaClaim, MediaItem

# A stored item whose copy at Twilio would not delete is tried this many times in all.
MAX_DELETE_ATTEMPTS = 20
UNFINISHED = f"""(state = 'pending' OR (state = 'stored' AND twilio_deleted_at IS NULL
                  AND media_sid IS NOT NULL AND attempts < {MAX_DELETE_ATTEMPTS}))"""


class PostgresMedia:
    """`MediaStore` on PostgreSQL with row-level security. `route_of` turns a sender row into a
    route with its decrypted auth token (`PostgresStore._route`)."""

    def __init__(self, db: Database, route_of: Callable[[asyncpg.Record], SenderRoute]) -> None:
        self.db = db
        self._route_of = route_of

    async def claim_downloads(
        self, hotel_id: int, message_id: int, *, lease_seconds: float
    ) -> MediaClaim | None:
        async def work(conn: Connection) -> MediaClaim | None:
            message = await conn.fetchrow(
                """SELECT m.conversation_id, m.provider_sid, c.sender_id FROM messages m
                   JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                   WHERE m.id = $1 AND m.direction = 'inbound'""",
                message_id,
            )
            if message is None:
                return None
            rows = await conn.fetch(
                f"""UPDATE media SET attempts = attempts + 1,
                      claimed_until = now() + make_interval(secs => $2)
                    WHERE message_id = $1 AND source_url IS NOT NULL AND {UNFINISHED}
                      AND (claimed_until IS NULL OR claimed_until < now())
                    RETURNING *""",  # noqa: S608 - our own constant
                message_id,
                lease_seconds,
            )
            held = await conn.fetchval(
                f"""SELECT extract(epoch FROM min(claimed_until) - now()) FROM media
                    WHERE message_id = $1 AND source_url IS NOT NULL AND {UNFINISHED}
                      AND claimed_until > now() AND NOT (id = ANY($2::bigint[]))""",  # noqa: S608
                message_id,
                [r["id"] for r in rows],
            )
            route = None
            if message["sender_id"] is not None and rows:
                sender = await conn.fetchrow(
                    f"SELECT {SENDER_COLUMNS} FROM whatsapp_senders WHERE id = $1",  # noqa: S608
                    message["sender_id"],
                )
                route = None if sender is None else self._route_of(sender)
            return MediaClaim(
                conversation_id=message["conversation_id"],
                message_sid=message["provider_sid"],
                route=route,
                items=tuple(media_item(r) for r in sorted(rows, key=lambda r: r["position"])),
                retry_in=max(1.0, float(held)) if held is not None else None,
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def mark_stored(
        self, hotel_id: int, media_id: int, *, storage_key: str, size_bytes: int, content_type: str
    ) -> None:
        """Stored in object storage; the lease stays until Twilio's copy is deleted."""

        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE media SET state = 'stored', storage_key = $2, size_bytes = $3,
                     content_type = $4, stored_at = now(), error = NULL
                   WHERE id = $1 AND state = 'pending'""",
                media_id,
                storage_key,
                size_bytes,
                content_type,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def mark_final(self, hotel_id: int, media_id: int, state: MediaState, error: str) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE media SET state = $2, error = $3, claimed_until = NULL
                   WHERE id = $1 AND state = 'pending'""",
                media_id,
                state.value,
                error[:300],
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def release(self, hotel_id: int, media_id: int, error: str) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE media SET claimed_until = NULL,
                     error = CASE WHEN state = 'pending' THEN NULLIF($2, '') ELSE error END
                   WHERE id = $1""",
                media_id,
                error[:300],
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def mark_twilio_deleted(self, hotel_id: int, media_id: int) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE media SET twilio_deleted_at = now(), claimed_until = NULL
                   WHERE id = $1""",
                media_id,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def item(self, hotel_id: int, media_id: int) -> MediaItem | None:
        async def work(conn: Connection) -> MediaItem | None:
            row = await conn.fetchrow(
                """SELECT d.*, m.conversation_id, m.direction FROM media d
                   JOIN messages m ON m.hotel_id = d.hotel_id AND m.id = d.message_id
                   WHERE d.id = $1""",
                media_id,
            )
            if row is None:
                return None
            return replace(
                media_item(row),
                conversation_id=row["conversation_id"],
                internal=row["direction"] == "internal",
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def of_message(self, hotel_id: int, message_id: int) -> list[MediaItem]:
        async def work(conn: Connection) -> list[MediaItem]:
            rows = await conn.fetch(
                "SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id
            )
            return [media_item(r) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def stalled(self, *, min_age_seconds: int, limit: int) -> list[tuple[int, int]]:
        async def work(conn: Connection) -> list[tuple[int, int]]:
            rows = await conn.fetch(
                "SELECT hotel_id, message_id FROM hotelchat_stalled_media($1, $2)",
                min_age_seconds,
                limit,
            )
            return [(r["hotel_id"], r["message_id"]) for r in rows]

        return await self.db.platform(work, idempotent=True)
