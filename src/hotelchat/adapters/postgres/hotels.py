"""The SQL behind `services.ports.Hotels`: a hotel's assistant settings and its AI spend.

A hotel's month is its own: spend counts from the first of the month in the hotel's time zone
(`hotelchat_month_start`), so a budget resets at local midnight, not at UTC's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import asyncpg

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.domain.errors import InvalidInput, NotFound
from hotelchat.services.ports import AssistantSettings, Spend


def _money(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _settings(row: asyncpg.Record) -> AssistantSettings:
    return AssistantSettings(
        ai_enabled=row["ai_enabled"],
        ai_model=row["ai_model"],
        monthly_budget_usd=_money(row["monthly_budget_usd"]),
        context_token_budget=row["context_token_budget"],
        image_understanding=row["image_understanding"],
    )


# The columns of hotels behind `AssistantSettings`, named as its fields.
SETTING_COLUMNS = ("ai_enabled", "ai_model", "monthly_budget_usd", "context_token_budget",
                   "image_understanding")  # fmt: skip


class PostgresHotels:
    """`Hotels` on PostgreSQL; every method but `all_spend` sees one hotel only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def month_spend(self, hotel_id: int) -> Spend:
        """This month's spend and the budget of hotel `hotel_id` (US dollars)."""

        async def work(conn: Connection) -> Spend:
            row = await conn.fetchrow(
                """
                SELECT h.monthly_budget_usd,
                       (SELECT COALESCE(sum(m.cost_usd), 0) FROM messages m
                        WHERE m.hotel_id = h.id AND m.cost_usd IS NOT NULL
                          AND m.created_at >= hotelchat_month_start(h.timezone)) AS spent
                FROM hotels h WHERE h.id = $1
                """,
                hotel_id,
            )
            if row is None:
                raise NotFound("no such hotel")
            return Spend(spent_usd=float(row["spent"]), budget_usd=_money(row[0]))

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def all_spend(self) -> list[tuple[str, Spend]]:
        """(slug, spend) of every hotel, through the one function that may read them all."""

        async def work(conn: Connection) -> list[tuple[str, Spend]]:
            rows = await conn.fetch("SELECT * FROM hotelchat_ai_spend() ORDER BY 1")
            return [
                (r["hotel_slug"], Spend(float(r["spent_usd"]), _money(r["budget_usd"])))
                for r in rows
            ]

        return await self.db.platform(work, idempotent=True)

    async def assistant_settings(self, hotel_id: int) -> AssistantSettings:
        async def work(conn: Connection) -> AssistantSettings:
            row = await conn.fetchrow(
                f"SELECT {', '.join(SETTING_COLUMNS)} FROM hotels WHERE id = $1",  # noqa: S608
                hotel_id,
            )
            if row is None:
                raise NotFound("no such hotel")
            return _settings(row)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def update_assistant_settings(
        self, hotel_id: int, changes: Mapping[str, object]
    ) -> AssistantSettings:
        """Set the settings named in `changes` (the others stay as they are) in one statement.
        Raises `InvalidInput` for an unknown setting, a value the schema refuses (a negative
        budget, a token budget outside 200-100,000, a model name over 100 characters) and a
        budget that is not a finite number (PostgreSQL's numeric would store NaN, and NaN >= 0
        passes its check: the budget would never be reached)."""
        unknown = set(changes) - set(SETTING_COLUMNS)
        if unknown:
            raise InvalidInput(f"no such setting: {', '.join(sorted(unknown))}")
        budget = changes.get("monthly_budget_usd")
        if isinstance(budget, float) and not math.isfinite(budget):
            raise InvalidInput("the budget must be a finite number of dollars")
        names = [name for name in SETTING_COLUMNS if name in changes]
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, 2)) or "id = id"

        async def work(conn: Connection) -> AssistantSettings:
            row = await conn.fetchrow(
                f"""UPDATE hotels SET {assignments} WHERE id = $1
                    RETURNING {", ".join(SETTING_COLUMNS)}""",  # noqa: S608 - names from a fixed list
                hotel_id,
                *(changes[name] for name in names),
            )
            if row is None:
                raise NotFound("no such hotel")
            return _settings(row)

        try:
            return await self.db.tenant(hotel_id, work, idempotent=True)
        except (asyncpg.CheckViolationError, asyncpg.NumericValueOutOfRangeError) as exc:
            raise InvalidInput(
                "budget 0 to 9,999,999,999 dollars, context 200 to 100,000 tokens, "
                "model name 1 to 100 characters"
            ) from exc
