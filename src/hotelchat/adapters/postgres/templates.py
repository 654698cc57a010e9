"""The SQL behind `services.ports.TemplateStore`: a hotel's WhatsApp templates, template sends,
the window a 63016 closes, and journeys with their once-per-reservation claims.

Each method is one short tenant transaction. A journey's claim row and the outbound message it
sends are stored in the same transaction, so a crash either leaves neither (the next run claims
again) or both (the outbound send job, or the sweeper, sends the message exactly once).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

import asyncpg

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.adapters.postgres.inbox import _lock_ownership, fetch_summary, take_for_agent_reply
from hotelchat.domain.conversation import Action, apply
from hotelchat.domain.errors import Conflict
from hotelchat.domain.model import Channel
from hotelchat.domain.templates import Journey, Template, render
from hotelchat.services.ports import AgentMessage, DueStay


def _template(row: asyncpg.Record) -> Template:
    return Template(
        content_sid=row["content_sid"],
        friendly_name=row["friendly_name"],
        language=row["language"],
        body=row["body"],
        variables=json.loads(row["variables"]),
        approval_status=row["approval_status"],
        source=row["source"],
    )


def _journey(row: asyncpg.Record) -> Journey:
    return Journey(
        id=row["id"],
        name=row["name"],
        template_name=row["template_name"],
        anchor=row["anchor"],
        offset_days=row["offset_days"],
        send_time=row["send_time"],
        quiet_start=row["quiet_start"],
        quiet_end=row["quiet_end"],
        variables=json.loads(row["variables"]),
        enabled=row["enabled"],
    )


UPSERT = """
INSERT INTO whatsapp_templates (hotel_id, content_sid, friendly_name, language, body, variables,
                                approval_status, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (hotel_id, content_sid) DO UPDATE SET
  friendly_name = EXCLUDED.friendly_name, language = EXCLUDED.language, body = EXCLUDED.body,
  variables = EXCLUDED.variables, approval_status = EXCLUDED.approval_status,
  source = EXCLUDED.source, updated_at = now()
RETURNING (xmax = 0) AS added
"""


def _upsert_args(hotel_id: int, t: Template) -> tuple[object, ...]:
    variables = json.dumps(dict(t.variables), ensure_ascii=False)
    return (hotel_id, t.content_sid, t.friendly_name, t.language, t.body, variables,
            t.approval_status, t.source)  # fmt: skip


async def _insert_template_message(
    conn: Connection,
    hotel_id: int,
    conversation_id: int,
    *,
    author: str,
    template: Template,
    variables: Mapping[str, str],
    agent_id: int | None,
    client_id: uuid.UUID | None,
) -> int:
    message_id: int = await conn.fetchval(
        """INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status,
                                 agent_id, client_id, language)
           VALUES ($1, $2, 'outbound', $3, $4, 'pending', $5, $6, $7) RETURNING id""",
        hotel_id,
        conversation_id,
        author,
        render(template.body, variables),
        agent_id,
        client_id,
        template.language.split("_")[0],
    )
    await conn.execute(
        """INSERT INTO outbound_templates (message_id, hotel_id, content_sid, variables)
           VALUES ($1, $2, $3, $4)""",
        message_id,
        hotel_id,
        template.content_sid,
        json.dumps(dict(variables), ensure_ascii=False),
    )
    return message_id


class PostgresTemplates:
    """`services.ports.TemplateStore` on PostgreSQL with row-level security."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- the registry ---------------------------------------------------------------------------

    async def templates(self, hotel_id: int) -> list[Template]:
        """The hotel's templates (approved or not), by name and language."""

        async def work(conn: Connection) -> list[Template]:
            rows = await conn.fetch(
                "SELECT * FROM whatsapp_templates ORDER BY friendly_name, language, content_sid"
            )
            return [_template(r) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def save_template(self, hotel_id: int, template: Template) -> bool:
        async def work(conn: Connection) -> bool:
            added: bool = await conn.fetchval(UPSERT, *_upsert_args(hotel_id, template))
            return added

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def remove_template(self, hotel_id: int, content_sid: str) -> bool:
        async def work(conn: Connection) -> bool:
            done = await conn.execute(
                "DELETE FROM whatsapp_templates WHERE content_sid = $1", content_sid
            )
            return bool(done == "DELETE 1")

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def replace_synced(
        self, hotel_id: int, templates: Sequence[Template]
    ) -> tuple[int, int, int]:
        """Synced templates become exactly `templates`; a hand-made one with the same
        ContentSid becomes synced. Unchanged rows are not touched."""

        async def work(conn: Connection) -> tuple[int, int, int]:
            current = {r["content_sid"]: _template(r) for r in await conn.fetch(
                "SELECT * FROM whatsapp_templates FOR UPDATE")}  # fmt: skip
            added = changed = 0
            wanted = {t.content_sid for t in templates}
            for template in templates:
                before = current.get(template.content_sid)
                if before == template:
                    continue
                await conn.execute(UPSERT, *_upsert_args(hotel_id, template))
                if before is None:
                    added += 1
                else:
                    changed += 1
            gone = [sid for sid, t in current.items() if t.source == "twilio" and sid not in wanted]
            if gone:
                await conn.execute(
                    "DELETE FROM whatsapp_templates WHERE content_sid = ANY($1)", gone
                )
            return added, changed, len(gone)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def hotels_to_sync(self) -> list[int]:
        async def work(conn: Connection) -> list[int]:
            return [r[0] for r in await conn.fetch("SELECT * FROM hotelchat_template_hotels()")]

        return await self.db.platform(work, idempotent=True)

    # --- sending --------------------------------------------------------------------------------

    async def add_template_message(
        self,
        hotel_id: int,
        conversation_id: int,
        agent_id: int,
        *,
        template: Template,
        variables: Mapping[str, str],
        client_id: str,
    ) -> AgentMessage:
        """Store an agent's template message once per `client_id`, taking the conversation
        over; WhatsApp conversations only. Raises `NotFound`, `Conflict`."""

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
            after = apply(current, Action.REPLY, agent_id)
            channel = await conn.fetchval(
                "SELECT channel FROM conversations WHERE id = $1", conversation_id
            )
            if Channel(channel) is not Channel.WHATSAPP:
                raise Conflict("templates are for WhatsApp conversations", code="not_whatsapp")
            await take_for_agent_reply(conn, conversation_id, after)
            message_id = await _insert_template_message(
                conn, hotel_id, conversation_id, author="agent", template=template,
                variables=variables, agent_id=agent_id, client_id=uuid.UUID(client_id),
            )  # fmt: skip
            return AgentMessage(
                message_id, True, await fetch_summary(conn, hotel_id, conversation_id)
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def mark_window_closed(
        self, hotel_id: int, message_id: int, *, notice: str, reason: str
    ) -> tuple[int, int] | None:
        """Close the conversation's window (Twilio said 63016 for `message_id`), add `notice`
        as a system note once per message, and give staff `reason` as the handoff reason."""

        async def work(conn: Connection) -> tuple[int, int] | None:
            conversation_id: int | None = await conn.fetchval(
                "SELECT conversation_id FROM messages WHERE id = $1 AND direction = 'outbound'",
                message_id,
            )
            if conversation_id is None:
                return None
            await conn.execute(
                """UPDATE conversations SET window_closed_at = now(),
                     handoff_reason = CASE WHEN state = 'agent' THEN handoff_reason ELSE $2 END,
                     state = CASE WHEN state IN ('ai', 'resolved') THEN 'needs_human'
                                  ELSE state END,
                     handoff_at = CASE WHEN state IN ('ai', 'resolved') THEN now()
                                       ELSE handoff_at END,
                     awaiting_human_since = CASE WHEN state IN ('ai', 'resolved')
                       THEN COALESCE(awaiting_human_since, now()) ELSE awaiting_human_since END
                   WHERE id = $1""",
                conversation_id,
                reason[:500],
            )
            # One notice per refused message: the note's in_reply_to is the message.
            noted = await conn.fetchval(
                """SELECT 1 FROM messages WHERE conversation_id = $1 AND in_reply_to = $2
                     AND direction = 'internal'""",
                conversation_id,
                message_id,
            )
            if noted:
                return None
            notice_id: int = await conn.fetchval(
                """INSERT INTO messages (hotel_id, conversation_id, direction, author, body,
                                         status, in_reply_to, error_code)
                   VALUES ($1, $2, 'internal', 'system', $3, 'received', $4, 'twilio_63016')
                   RETURNING id""",
                hotel_id,
                conversation_id,
                notice,
                message_id,
            )
            return conversation_id, notice_id

        return await self.db.tenant(hotel_id, work, idempotent=True)

    # --- journeys -------------------------------------------------------------------------------

    async def journeys(self, hotel_id: int) -> list[Journey]:
        async def work(conn: Connection) -> list[Journey]:
            return [_journey(r) for r in await conn.fetch("SELECT * FROM journeys ORDER BY name")]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def add_journey(self, hotel_id: int, journey: Journey) -> int:
        """Raises `Conflict` when the hotel has a journey of that name."""

        async def work(conn: Connection) -> int:
            try:
                journey_id: int = await conn.fetchval(
                    """INSERT INTO journeys (hotel_id, name, template_name, anchor, offset_days,
                         send_time, quiet_start, quiet_end, variables, enabled)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
                    hotel_id, journey.name, journey.template_name, journey.anchor,
                    journey.offset_days, journey.send_time, journey.quiet_start,
                    journey.quiet_end, json.dumps(dict(journey.variables)), journey.enabled,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise Conflict(f"the hotel has a journey called {journey.name!r}") from None
            return journey_id

        return await self.db.tenant(hotel_id, work, idempotent=False)

    async def remove_journey(self, hotel_id: int, name: str) -> bool:
        async def work(conn: Connection) -> bool:
            return bool(await conn.execute("DELETE FROM journeys WHERE name = $1", name)
                        == "DELETE 1")  # fmt: skip

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def journey_hotels(self) -> list[int]:
        async def work(conn: Connection) -> list[int]:
            return [r[0] for r in await conn.fetch("SELECT * FROM hotelchat_journey_hotels()")]

        return await self.db.platform(work, idempotent=True)

    async def due_stays(self, hotel_id: int, journey: Journey, today: date) -> list[DueStay]:
        """Reservations not cancelled whose anchor date is `offset_days` before `today`, give or
        take a day (quiet hours can move a send to the next day), not handled by `journey`."""
        anchor = "r.check_in" if journey.anchor == "check_in" else "r.check_out"
        centre = today - timedelta(days=journey.offset_days)

        async def work(conn: Connection) -> list[DueStay]:
            rows = await conn.fetch(
                f"""SELECT r.id, r.code, r.guest_name, r.phone_number, r.check_in, r.check_out,
                           r.room_type, {anchor} AS anchor, h.name AS hotel_name,
                           (SELECT g.language FROM guests g WHERE g.phone_number = r.phone_number
                            ORDER BY g.last_seen_at DESC LIMIT 1) AS guest_language
                    FROM reservations r JOIN hotels h ON h.id = r.hotel_id
                    WHERE r.status <> 'cancelled'
                      AND {anchor} BETWEEN $1::date - 1 AND $1::date + 1
                      AND NOT EXISTS (SELECT 1 FROM journey_sends s
                                      WHERE s.journey_id = $2 AND s.reservation_id = r.id)
                    ORDER BY r.id LIMIT 500""",  # noqa: S608 - anchor is one of two columns
                centre,
                journey.id,
            )
            return [
                DueStay(
                    reservation_id=r["id"],
                    phone_number=r["phone_number"],
                    anchor=r["anchor"],
                    guest_language=r["guest_language"],
                    fields={
                        "guest_name": r["guest_name"],
                        "first_name": r["guest_name"].split()[0],
                        "check_in": r["check_in"].isoformat(),
                        "check_out": r["check_out"].isoformat(),
                        "room_type": r["room_type"] or "",
                        "code": r["code"],
                        "hotel_name": r["hotel_name"],
                        "nights": str((r["check_out"] - r["check_in"]).days),
                    },
                )
                for r in rows
            ]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def claim_journey_send(
        self,
        hotel_id: int,
        journey_id: int,
        stay: DueStay,
        *,
        outcome: str,
        template: Template | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> int | None:
        async def work(conn: Connection) -> int | None:
            claim_id = await conn.fetchval(
                """INSERT INTO journey_sends (hotel_id, journey_id, reservation_id, outcome)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (journey_id, reservation_id) DO NOTHING RETURNING id""",
                hotel_id,
                journey_id,
                stay.reservation_id,
                outcome,
            )
            if claim_id is None or outcome != "queued":
                return None
            assert template is not None
            assert variables is not None
            assert stay.phone_number
            sender_id = await conn.fetchval(
                """SELECT id FROM whatsapp_senders WHERE retired_at IS NULL
                   ORDER BY id LIMIT 1"""
            )
            if sender_id is None:
                await conn.execute(
                    "UPDATE journey_sends SET outcome = 'no_sender' WHERE id = $1", claim_id
                )
                return None
            guest_id = await conn.fetchval(
                """INSERT INTO guests (hotel_id, wa_id, phone_number, display_name)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (hotel_id, wa_id) DO UPDATE SET phone_number = EXCLUDED.phone_number
                   RETURNING id""",
                hotel_id,
                stay.phone_number.lstrip("+"),
                stay.phone_number,
                stay.fields.get("guest_name"),
            )
            conversation_id = await conn.fetchval(
                """INSERT INTO conversations (hotel_id, guest_id, channel, sender_id)
                   VALUES ($1, $2, 'whatsapp', $3)
                   ON CONFLICT (hotel_id, guest_id, channel)
                     DO UPDATE SET last_message_at = now()
                   RETURNING id""",
                hotel_id,
                guest_id,
                sender_id,
            )
            message_id = await _insert_template_message(
                conn, hotel_id, conversation_id, author="system", template=template,
                variables=variables, agent_id=None, client_id=None,
            )  # fmt: skip
            await conn.execute(
                "UPDATE journey_sends SET message_id = $2 WHERE id = $1", claim_id, message_id
            )
            return message_id

        return await self.db.tenant(hotel_id, work, idempotent=True)
