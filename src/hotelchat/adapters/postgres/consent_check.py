"""`services.ports.ConsentChecker` on the opt-out register of issue 9 §3: table
`guest_consents (hotel_id, guest_id, opted_out, changed_at, keyword, …)`, one row per guest and
hotel, created by that work's migration (0006_opt_out on its branch), not by 0008_templates.

Journeys and agents' template sends ask it by phone number, since a reservation's guest may
have no guest row yet (then nobody opted out). Wire it in `bootstrap.py` as
`consent=PostgresConsentChecker(db)` once `guest_consents` exists.
"""

from __future__ import annotations

from hotelchat.adapters.postgres.database import Connection, Database


class PostgresConsentChecker:
    """Whether any guest of the hotel with this WhatsApp number opted out."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def opted_out(self, hotel_id: int, phone_number: str) -> bool:
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
