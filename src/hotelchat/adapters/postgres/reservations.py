"""The SQL behind a hotel's reservations: imported in bulk (a CSV export, later a
property-management system), looked up for the guest of one conversation, and tied to a web-chat
guest by the link the hotel sent them.

A guest's reservations are found through their conversation only: a WhatsApp guest's by the
number Twilio delivered their message from, a web-chat guest's by the web-chat identity a
reservation link tied to it. Nothing a caller passes besides the conversation widens that.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import structlog

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound
from hotelchat.services.ports import Reservation

log = structlog.get_logger(__name__)

# What the guest of one conversation sees at most: current and coming stays, best first.
MAX_PER_GUEST = 5

COLUMNS = """code, guest_name, check_in, check_out, status, room_type, adults, children,
             phone_number, email, notes"""

# The table's CHECK constraints (migration 0003), as the person importing should read them.
_CHECKS = {
    "reservations_code_check": "code must be 3 to 40 letters, digits or hyphens",
    "reservations_guest_name_check": "guest_name must be 1 to 200 characters",
    "reservations_phone_number_check": "phone_number must be E.164 (+ and 7 to 15 digits)",
    "reservations_email_check": "email must be at most 254 characters",
    "reservations_room_type_check": "room_type must be at most 100 characters",
    "reservations_adults_check": "adults must be 0 to 50",
    "reservations_children_check": "children must be 0 to 50",
    "reservations_status_check": "status must be confirmed, checked_in, checked_out or cancelled",
    "reservations_notes_check": "notes must be at most 2000 characters",
    "reservations_source_check": "the source name must be at most 50 characters",
    "reservations_check": "check_out must be after check_in",
}


def _reservation(row: asyncpg.Record, *, with_notes: bool = True) -> Reservation:
    return Reservation(
        code=row["code"],
        guest_name=row["guest_name"],
        check_in=row["check_in"],
        check_out=row["check_out"],
        status=row["status"],
        room_type=row["room_type"],
        adults=row["adults"],
        children=row["children"],
        phone_number=row["phone_number"],
        email=row["email"],
        notes=row["notes"] if with_notes else None,
    )


def _translate(exc: asyncpg.PostgresError, code: str) -> Exception:
    """A constraint violation as `InvalidInput` naming the reservation; others unchanged."""
    if isinstance(exc, asyncpg.CheckViolationError):
        problem = _CHECKS.get(exc.constraint_name or "", "a value is out of range")
        return InvalidInput(f"reservation {code!r}: {problem}")
    if isinstance(exc, asyncpg.NotNullViolationError):
        return InvalidInput(f"reservation {code!r}: {exc.column_name or 'a field'} is required")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound("no such hotel")
    if isinstance(exc, asyncpg.DataError):
        return InvalidInput(f"reservation {code!r}: a value has the wrong form")
    return exc


def local_today(timezone: str | None) -> date:
    """Today's date in IANA time zone `timezone`; UTC for an unknown or missing one (a bad
    setting must not hide a guest's stay)."""
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("reservations.bad_timezone")
        zone = ZoneInfo("UTC")
    return datetime.now(zone).date()


async def upsert_reservations(
    conn: Connection, hotel_id: int, reservations: Sequence[Reservation], *, source: str
) -> tuple[int, int]:
    """Add or update `reservations` by code on `conn`, inside the caller's transaction; returns
    (added, updated). An update keeps the web-chat guest a reservation is linked to. Raises
    `InvalidInput` naming the first reservation a constraint refuses, or a code given twice."""
    seen: set[str] = set()
    for reservation in reservations:
        if reservation.code in seen:
            raise InvalidInput(f"reservation {reservation.code!r} is given twice")
        seen.add(reservation.code)
    statement = await conn.prepare(
        """INSERT INTO reservations (hotel_id, code, guest_name, phone_number, email, check_in,
                                     check_out, room_type, adults, children, status, notes,
                                     source)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (hotel_id, code) DO UPDATE SET
             guest_name = EXCLUDED.guest_name, phone_number = EXCLUDED.phone_number,
             email = EXCLUDED.email, check_in = EXCLUDED.check_in,
             check_out = EXCLUDED.check_out, room_type = EXCLUDED.room_type,
             adults = EXCLUDED.adults, children = EXCLUDED.children, status = EXCLUDED.status,
             notes = EXCLUDED.notes, source = EXCLUDED.source, updated_at = now()
           RETURNING (xmax = 0)"""
    )
    added = updated = 0
    for r in reservations:
        try:
            inserted = await statement.fetchval(
                hotel_id,
                r.code,
                r.guest_name,
                r.phone_number,
                r.email,
                r.check_in,
                r.check_out,
                r.room_type,
                r.adults,
                r.children,
                r.status,
                r.notes,
                source,
            )
        except asyncpg.PostgresError as exc:
            raise _translate(exc, r.code) from exc
        if inserted:
            added += 1
        else:
            updated += 1
    return added, updated


class PostgresReservations:
    """`services.ports.Reservations` on PostgreSQL, one hotel at a time (tenant transactions)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert_many(
        self, hotel_id: int, reservations: Sequence[Reservation], *, source: str
    ) -> tuple[int, int]:
        """Add or update reservations by code, all in one transaction (none on failure);
        returns (added, updated). Raises `InvalidInput` naming the reservation at fault."""

        async def work(conn: Connection) -> tuple[int, int]:
            return await upsert_reservations(conn, hotel_id, reservations, source=source)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def of_conversation(self, hotel_id: int, conversation_id: int) -> list[Reservation]:
        """At most 5 reservations of the guest of `conversation_id`: a WhatsApp guest's by
        their number, a web-chat guest's by the identity a link tied to them. Only stays not
        cancelled that end today or later (the hotel's local date); staying guests first, then
        by arrival. Staff notes are left out. Empty for a conversation of another hotel."""

        async def work(conn: Connection) -> list[Reservation]:
            guest = await conn.fetchrow(
                """SELECT g.phone_number, g.web_id, h.timezone
                   FROM conversations c
                   JOIN guests g ON g.hotel_id = c.hotel_id AND g.id = c.guest_id
                   JOIN hotels h ON h.id = c.hotel_id
                   WHERE c.hotel_id = $1 AND c.id = $2""",
                hotel_id,
                conversation_id,
            )
            if guest is None or (guest["web_id"] is None and guest["phone_number"] is None):
                return []
            # A guest has one identity (guests_one_identity): a web id, or a WhatsApp number.
            match, value = (
                ("web_id = $2", guest["web_id"])
                if guest["web_id"] is not None
                else ("phone_number = $2", guest["phone_number"])
            )
            rows = await conn.fetch(
                f"""SELECT {COLUMNS} FROM reservations
                    WHERE hotel_id = $1 AND {match}
                      AND status <> 'cancelled' AND check_out >= $3
                    ORDER BY CASE status WHEN 'checked_in' THEN 0
                                         WHEN 'checked_out' THEN 2 ELSE 1 END,
                             check_in, code
                    LIMIT $4""",  # noqa: S608 - both fragments are constants above
                hotel_id,
                value,
                local_today(guest["timezone"]),
                MAX_PER_GUEST,
            )
            return [_reservation(r, with_notes=False) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def find(self, hotel_id: int, code: str) -> Reservation | None:
        """Reservation `code` of this hotel (codes are exact), or None."""

        async def work(conn: Connection) -> Reservation | None:
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM reservations WHERE hotel_id = $1 AND code = $2",  # noqa: S608
                hotel_id,
                code,
            )
            return None if row is None else _reservation(row)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def link_web_guest(
        self, hotel_id: int, code: str, web_id: str, *, issued_at: datetime | None = None
    ) -> bool:
        """Tie reservation `code` to web-chat guest `web_id` (a UUID). True when it is tied to
        them (now, or already); False when the hotel has no such reservation. A reservation
        tied to another guest moves only for a link issued later than the one that tied it
        (`issued_at`, aware; None: now); else raises `Conflict`. `InvalidInput` for a
        malformed `web_id`."""
        try:
            guest = uuid.UUID(web_id)
        except ValueError:
            raise InvalidInput("bad web-chat guest id") from None

        async def work(conn: Connection) -> bool:
            row = await conn.fetchrow(
                """SELECT web_id, web_link_issued_at FROM reservations
                   WHERE hotel_id = $1 AND code = $2 FOR UPDATE""",
                hotel_id,
                code,
            )
            if row is None:
                return False
            if row["web_id"] == guest:
                return True
            earlier = row["web_link_issued_at"]
            if (
                row["web_id"] is not None
                and issued_at is not None
                and earlier is not None
                and issued_at <= earlier
            ):
                raise Conflict("this reservation is linked to another chat", code="linked")
            await conn.execute(
                """UPDATE reservations SET web_id = $3, web_link_issued_at = COALESCE($4, now())
                   WHERE hotel_id = $1 AND code = $2""",
                hotel_id,
                code,
                guest,
                issued_at,
            )
            return True

        return await self.db.tenant(hotel_id, work, idempotent=True)
