"""The SQL behind `services.ports.ServiceRequests`: what guests asked staff to do, filed by the
assistant, listed and closed by agents.

A request belongs to the guest message that asked for it: the unique index `service_requests_once`
(hotel, message, kind) makes filing idempotent, so a reply job that runs again after a crash finds
the request it filed instead of filing a second one. Row-level security keeps each hotel's
requests its own: another hotel's request id is simply not there (`NotFound`).
"""

from __future__ import annotations

from typing import Literal

import asyncpg

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound
from hotelchat.services.ports import ServiceRequest

# The guest's name, or their number when they gave none; the agent who closed the request (an
# agent no longer working in the hotel is not visible here, hence no name).
SELECT = """
SELECT r.id, r.conversation_id, r.kind, r.details, r.status, r.created_at, r.closed_at,
       a.display_name AS closed_by_name,
       COALESCE(g.display_name, g.phone_number) AS guest_name
FROM service_requests r
JOIN conversations c ON c.hotel_id = r.hotel_id AND c.id = r.conversation_id
JOIN guests g ON g.hotel_id = c.hotel_id AND g.id = c.guest_id
LEFT JOIN agents a ON a.id = r.closed_by
"""


def _request(row: asyncpg.Record) -> ServiceRequest:
    return ServiceRequest(
        id=row["id"],
        conversation_id=row["conversation_id"],
        kind=row["kind"],
        details=row["details"],
        status=row["status"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
        closed_by_name=row["closed_by_name"],
        guest_name=row["guest_name"],
    )


async def _one(conn: Connection, hotel_id: int, request_id: int) -> ServiceRequest:
    row = await conn.fetchrow(f"{SELECT} WHERE r.hotel_id = $1 AND r.id = $2", hotel_id, request_id)
    if row is None:
        raise NotFound("no such service request")
    return _request(row)


class PostgresServiceRequests:
    """`ServiceRequests` on PostgreSQL, one hotel per transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, hotel_id: int, conversation_id: int, *, kind: str, details: str, message_id: int
    ) -> tuple[ServiceRequest, bool]:
        """File a request of `kind` for inbound message `message_id` of conversation
        `conversation_id`: (the request, True), or (the one filed already for this message and
        kind, False). Raises `NotFound` when the conversation is not this hotel's and
        `InvalidInput` for a kind or details the schema refuses."""

        async def work(conn: Connection) -> tuple[ServiceRequest, bool]:
            try:
                created = await conn.fetchval(
                    """INSERT INTO service_requests
                         (hotel_id, conversation_id, kind, details, message_id)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (hotel_id, message_id, kind) WHERE message_id IS NOT NULL
                       DO NOTHING
                       RETURNING id""",
                    hotel_id,
                    conversation_id,
                    kind,
                    details,
                    message_id,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound("no such conversation") from exc
            except asyncpg.CheckViolationError as exc:
                raise InvalidInput("a known kind, and details of 1 to 1000 characters") from exc
            if created is not None:
                return await _one(conn, hotel_id, created), True
            # Filed before (the other transaction has committed: ON CONFLICT waited for it).
            existing = await conn.fetchval(
                """SELECT id FROM service_requests
                   WHERE hotel_id = $1 AND message_id = $2 AND kind = $3""",
                hotel_id,
                message_id,
                kind,
            )
            return await _one(conn, hotel_id, existing), False

        # Safe to repeat: a second run finds the row the first one committed.
        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def list(
        self, hotel_id: int, *, status: Literal["open", "done", "cancelled"] | None, limit: int
    ) -> list[ServiceRequest]:
        """The hotel's requests (of `status`, or all when None), newest first, at most `limit`."""

        async def work(conn: Connection) -> list[ServiceRequest]:
            rows = await conn.fetch(
                f"""{SELECT}
                    WHERE r.hotel_id = $1 AND ($2::text IS NULL OR r.status = $2)
                    ORDER BY r.created_at DESC, r.id DESC
                    LIMIT $3""",
                hotel_id,
                status,
                limit,
            )
            return [_request(r) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def close(
        self,
        hotel_id: int,
        request_id: int,
        agent_id: int,
        status: Literal["done", "cancelled"],
    ) -> ServiceRequest:
        """Mark an open request done or cancelled by agent `agent_id`, now. Raises `NotFound`
        (no such request in this hotel) or `Conflict` (closed already)."""

        async def work(conn: Connection) -> ServiceRequest:
            closed = await conn.fetchval(
                """UPDATE service_requests
                   SET status = $3, closed_at = now(), closed_by = $4
                   WHERE hotel_id = $1 AND id = $2 AND status = 'open'
                   RETURNING id""",
                hotel_id,
                request_id,
                status,
                agent_id,
            )
            if closed is None:
                current = await _one(conn, hotel_id, request_id)  # NotFound when not ours
                raise Conflict(f"this request is {current.status} already", code="already_closed")
            return await _one(conn, hotel_id, request_id)

        # Not repeated after a dropped connection: a second run would answer Conflict.
        return await self.db.tenant(hotel_id, work, idempotent=False)
