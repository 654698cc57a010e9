"""The SQL behind `services.ports.Store` and `KnowledgeSearch`.

Each public method is one short transaction through `Database`; none is open while a network call
to anything but PostgreSQL is in flight. Row locks (`FOR UPDATE`) last only as long as the
transaction that takes them. Leases (`reply_claimed_until`, `send_claimed_until`) are what a job
holds across slow work: plain timestamps that expire by themselves if the job dies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import asyncpg
from cachetools import TTLCache

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.config import ConfigError
from hotelchat.domain.errors import NotFound
from hotelchat.domain.media import MediaState
from hotelchat.domain.model import (
    Author,
    Channel,
    DeliveryStatus,
    HotelProfile,
    InboundWhatsApp,
    Passage,
    SenderRoute,
    Turn,
)
from hotelchat.services.ports import (
    AlreadySent,
    Busy,
    DraftReply,
    Gone,
    InboundRecord,
    MediaItem,
    ReplyAlreadyStored,
    ReplyClaim,
    ReplyClaimed,
    ReplyContext,
    ReplySkipped,
    ReplyStored,
    ReplyStoreResult,
    SendClaim,
    SendPlan,
    SentMessage,
    StalledWork,
    StatusUpdate,
)

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 32


class _DuplicateSid(Exception):
    """Raised inside a transaction to roll it back when the MessageSid is already stored."""


class _Unroutable(Exception):
    """Raised inside a transaction to roll it back when the number no longer routes to the
    hotel (retired, or the hotel suspended) since its route was remembered."""


SENDER_COLUMNS = """hotel_id, id AS sender_id, phone_number, account_sid, auth_token,
                    auth_token_ciphertext"""
# Whether a sender still routes to its hotel: not retired, the hotel not suspended.
ROUTABLE = """EXISTS (SELECT 1 FROM whatsapp_senders s JOIN hotels h ON h.id = s.hotel_id
                      WHERE s.id = {sender} AND s.hotel_id = {hotel} AND s.retired_at IS NULL
                        AND NOT h.suspended)"""
# One statement stores an inbound message with its guest and conversation, and only while the
# sender still routes to the hotel.
STORE_INBOUND = """
    WITH guest AS (
      INSERT INTO guests (hotel_id, wa_id, phone_number, display_name, language)
      SELECT $1, $2, $3, $4, $5 WHERE {routable}
      ON CONFLICT (hotel_id, wa_id) DO UPDATE SET
        phone_number = EXCLUDED.phone_number,
        display_name = COALESCE(EXCLUDED.display_name, guests.display_name),
        language = COALESCE(EXCLUDED.language, guests.language),
        last_seen_at = now()
      RETURNING id
    ), conversation AS (
      INSERT INTO conversations (hotel_id, guest_id, channel, sender_id,
                                 last_inbound_at, last_message_at)
      SELECT $1, guest.id, 'whatsapp', $6, now(), now() FROM guest
      ON CONFLICT (hotel_id, guest_id, channel) DO UPDATE SET
        sender_id = EXCLUDED.sender_id,
        last_inbound_at = now(),
        last_message_at = now(),
        state = CASE WHEN conversations.state = 'resolved' THEN 'ai'
                     ELSE conversations.state END
      RETURNING id
    )
    INSERT INTO messages (hotel_id, conversation_id, direction, author, body,
                          provider_sid, status, reply_state, language, num_media)
    SELECT $1, conversation.id, 'inbound', 'guest', $7, $8, 'received', 'pending',
           $5, $9
    FROM conversation
    ON CONFLICT (provider_sid) DO NOTHING
    RETURNING id, conversation_id
""".format(routable=ROUTABLE.format(sender="$6", hotel="$1"))  # noqa: S608 - our own SQL
STILL_ROUTABLE = "SELECT " + ROUTABLE.format(sender="$1", hotel="$2")


def media_item(row: asyncpg.Record | Mapping[str, Any]) -> MediaItem:
    """A `media` row (or the JSON object of one that a timeline query builds, which leaves out
    where the file is and how it was fetched)."""
    return MediaItem(
        id=row["id"],
        message_id=row["message_id"],
        position=row["position"],
        content_type=row["content_type"],
        state=MediaState(row["state"]),
        error=row["error"],
        size_bytes=row["size_bytes"],
        storage_key=row.get("storage_key"),
        filename=row["filename"],
        source_url=row.get("source_url"),
        media_sid=row.get("media_sid"),
        attempts=row.get("attempts", 0),
        twilio_deleted=row.get("twilio_deleted_at") is not None,
    )


def _hotel(row: asyncpg.Record) -> HotelProfile:
    return HotelProfile(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        timezone=row["timezone"],
        default_language=row["default_language"],
        description=row["description"],
        ai_model=row["ai_model"],
        ai_enabled=row["ai_enabled"],
        knowledge_version=row["knowledge_version"],
        context_token_budget=row["context_token_budget"],
        monthly_budget_usd=(
            float(row["monthly_budget_usd"]) if row["monthly_budget_usd"] is not None else None
        ),
        suspended=row["suspended"],
        image_understanding=row["image_understanding"],
    )


HOTEL_COLUMNS = """id, slug, name, timezone, default_language, description, ai_model, ai_enabled,
                   knowledge_version, context_token_budget, monthly_budget_usd, suspended,
                   image_understanding"""


# Routes of our WhatsApp numbers, kept briefly: every webhook needs one before anything else.
ROUTE_CACHE_SIZE = 1024
ROUTE_CACHE_SECONDS = 30.0


class PostgresStore:
    """`Store` on PostgreSQL with row-level security; see `services.ports.Store`. `cipher`
    decrypts the Twilio auth tokens of routes (without one, reading a route raises
    `ConfigError`)."""

    def __init__(self, db: Database, cipher: TokenCipher | None = None) -> None:
        self.db = db
        self.cipher = cipher
        self._routes: TTLCache[str, SenderRoute] = TTLCache(
            maxsize=ROUTE_CACHE_SIZE, ttl=ROUTE_CACHE_SECONDS
        )

    def _route(self, row: asyncpg.Record) -> SenderRoute:
        if row["auth_token_ciphertext"] is not None:
            if self.cipher is None:
                raise ConfigError("ENCRYPTION_KEYS is not set: it decrypts Twilio auth tokens")
            token = self.cipher.decrypt(row["auth_token_ciphertext"])
        else:
            token = row["auth_token"]  # stored before revision 0005; `migrate` encrypts it
        return SenderRoute(
            hotel_id=row["hotel_id"],
            sender_id=row["sender_id"],
            phone_number=row["phone_number"],
            account_sid=row["account_sid"],
            auth_token=token,
            hotel_slug=row.get("hotel_slug", ""),
        )

    def route_from_row(self, row: asyncpg.Record) -> SenderRoute:
        """The route of a `whatsapp_senders` row selected with `SENDER_COLUMNS`."""
        return self._route(row)

    def forget_routes(self) -> None:
        """Drop cached routes (after re-provisioning numbers, e.g. between tests)."""
        self._routes.clear()

    # --- routing (no tenant yet) ----------------------------------------------------------------

    async def route_whatsapp_sender(
        self, phone_number: str, *, fresh: bool = False
    ) -> SenderRoute | None:
        """The hotel that owns WhatsApp number `phone_number` (E.164), or None.

        Known numbers are remembered for 30 seconds; `fresh=True` asks PostgreSQL again (the
        caller does when a signature does not match, so a rotated auth token is picked up at
        once). Unknown numbers are never remembered. A remembered route is only a hint: storing
        a message checks in the same statement that the number still routes to the hotel.
        """
        if not fresh and (cached := self._routes.get(phone_number)) is not None:
            return cached

        async def work(conn: Connection) -> SenderRoute | None:
            row = await conn.fetchrow(
                "SELECT * FROM hotelchat_route_whatsapp_sender($1)", phone_number
            )
            return None if row is None else self._route(row)

        route = await self.db.platform(work, idempotent=True)
        if route is None:
            self._routes.pop(phone_number, None)
        else:
            self._routes[phone_number] = route
        return route

    async def route_hotel(self, slug: str, *, for_guests: bool = True) -> int | None:
        """The id of the hotel with `slug`, or None; None too for a suspended hotel, unless not
        `for_guests` (staff tools)."""

        async def work(conn: Connection) -> int | None:
            hotel_id: int | None = await conn.fetchval(
                "SELECT hotelchat_route_hotel($1, $2)", slug, for_guests
            )
            return hotel_id

        return await self.db.platform(work, idempotent=True)

    async def whatsapp_senders(self, hotel_id: int) -> list[SenderRoute]:
        """The hotel's WhatsApp numbers with their Twilio credentials."""

        async def work(conn: Connection) -> list[SenderRoute]:
            rows = await conn.fetch(
                f"""SELECT {SENDER_COLUMNS} FROM whatsapp_senders
                    WHERE hotel_id = $1 AND retired_at IS NULL ORDER BY id""",  # noqa: S608
                hotel_id,
            )
            return [self._route(row) for row in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def inbound_progress(self, hotel_id: int, inbound_sid: str) -> tuple[str, str] | None:
        """`(reply_state, conversation_state)` of the inbound message with MessageSid
        `inbound_sid`, or None if it is not stored."""

        async def work(conn: Connection) -> tuple[str, str] | None:
            row = await conn.fetchrow(
                """SELECT m.reply_state, c.state FROM messages m
                   JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                   WHERE m.provider_sid = $1""",
                inbound_sid,
            )
            return None if row is None else (row["reply_state"], row["state"])

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def automated_reply(
        self, hotel_id: int, inbound_sid: str
    ) -> tuple[str, DeliveryStatus] | None:
        """Body and status of the automated reply to the inbound message with MessageSid
        `inbound_sid`, once there is one."""

        async def work(conn: Connection) -> tuple[str, DeliveryStatus] | None:
            row = await conn.fetchrow(
                """SELECT r.body, r.status FROM messages m
                   JOIN messages r ON r.in_reply_to = m.id AND r.author IN ('ai', 'system')
                   WHERE m.provider_sid = $1""",
                inbound_sid,
            )
            return None if row is None else (row["body"], DeliveryStatus(row["status"]))

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def hotel_profile(self, hotel_id: int) -> HotelProfile | None:
        """What the guest-facing pages may show of the hotel."""

        async def work(conn: Connection) -> HotelProfile | None:
            row = await conn.fetchrow(
                f"SELECT {HOTEL_COLUMNS} FROM hotels WHERE id = $1",  # noqa: S608
                hotel_id,
            )
            return None if row is None else _hotel(row)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def oldest_awaiting_human(self) -> list[tuple[str, float]]:
        """Per hotel (slug), how long its longest-waiting guest has waited for a human, in
        seconds (0: nobody waits)."""

        async def work(conn: Connection) -> list[tuple[str, float]]:
            rows = await conn.fetch("SELECT * FROM hotelchat_oldest_awaiting_human()")
            return [(r["hotel_slug"], float(r["waiting_seconds"])) for r in rows]

        return await self.db.platform(work, idempotent=True)

    async def stalled_work(self, *, min_age_seconds: int, limit: int) -> list[StalledWork]:
        """Replies and sends no live job holds, older than `min_age_seconds`; at most `limit`
        of each kind."""

        async def work(conn: Connection) -> list[StalledWork]:
            rows = await conn.fetch(
                "SELECT kind, hotel_id, message_id FROM hotelchat_stalled_work($1, $2)",
                min_age_seconds,
                limit,
            )
            return [StalledWork(r["kind"], r["hotel_id"], r["message_id"]) for r in rows]

        return await self.db.platform(work, idempotent=True)

    # --- inbound --------------------------------------------------------------------------------

    async def record_inbound_whatsapp(
        self, route: SenderRoute, inbound: InboundWhatsApp, language: str | None
    ) -> InboundRecord:
        """Store an inbound WhatsApp message with its guest and conversation, once per
        MessageSid, in one statement. A replay writes nothing and reports `duplicate=True`.

        The statement stores nothing unless the number still routes to the hotel (not retired,
        the hotel not suspended), so a remembered route never outlives a change: raises
        `NotFound` then, as for an unknown number, and forgets the route."""

        async def work(conn: Connection) -> InboundRecord:
            row = await conn.fetchrow(
                STORE_INBOUND,
                route.hotel_id,
                inbound.wa_id,
                inbound.from_number,
                inbound.profile_name,
                language,
                route.sender_id,
                inbound.body,
                inbound.message_sid,
                inbound.num_media,
            )
            if row is None:
                # A replay (or a concurrent retry that won): keep nothing of this attempt.
                raise _DuplicateSid
            if inbound.media:
                await conn.executemany(
                    """INSERT INTO media (hotel_id, message_id, position, source_url, media_sid,
                                          content_type, state, error)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                    [
                        (route.hotel_id, row["id"], m.position, m.url, m.media_sid,
                         m.content_type, "refused" if m.refusal else "pending", m.refusal)
                        for m in inbound.media
                    ],
                )  # fmt: skip
            return InboundRecord(
                row["id"], row["conversation_id"], duplicate=False, awaiting_reply=True
            )

        async def existing(conn: Connection) -> InboundRecord:
            row = await conn.fetchrow(
                "SELECT id, conversation_id, reply_state FROM messages WHERE provider_sid = $1",
                inbound.message_sid,
            )
            if row is None:
                routable = await conn.fetchval(
                    STILL_ROUTABLE,
                    route.sender_id,
                    route.hotel_id,
                )
                if not routable:
                    raise _Unroutable
                # Stored by another hotel: SIDs are global, so never in practice.
                return InboundRecord(None, None, duplicate=True, awaiting_reply=False)
            return InboundRecord(
                row["id"],
                row["conversation_id"],
                duplicate=True,
                awaiting_reply=row["reply_state"] == "pending",
            )

        try:
            return await self.db.tenant(route.hotel_id, work, idempotent=True)
        except _DuplicateSid:
            try:
                return await self.db.tenant(route.hotel_id, existing, idempotent=True)
            except _Unroutable:
                self._routes.pop(route.phone_number, None)
                raise NotFound("no hotel uses this WhatsApp number") from None

    # --- replies --------------------------------------------------------------------------------

    async def claim_reply(
        self,
        hotel_id: int,
        message_id: int,
        *,
        lease_seconds: float,
        history_turns: int,
        max_attempts: int,
    ) -> ReplyClaim:
        """Take the lease on answering inbound message `message_id`, or say why not. After
        `max_attempts` claims the assistant gives up and the conversation goes to staff."""

        async def work(conn: Connection) -> ReplyClaim:
            row = await conn.fetchrow(
                """
                SELECT m.direction, m.reply_state, m.body, m.language, m.conversation_id,
                       m.attempts, m.reply_claimed_until > now() AS claimed,
                       extract(epoch FROM m.reply_claimed_until - now()) AS claimed_for,
                       c.state, c.channel, g.language AS guest_language,
                       r.id AS reply_id, r.status AS reply_status,
                       EXISTS (SELECT 1 FROM messages n
                               WHERE n.hotel_id = m.hotel_id
                                 AND n.conversation_id = m.conversation_id
                                 AND n.direction = 'inbound' AND n.id > m.id
                                 AND n.reply_state = 'pending') AS superseded
                FROM messages m
                JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                JOIN guests g ON g.hotel_id = c.hotel_id AND g.id = c.guest_id
                LEFT JOIN messages r ON r.in_reply_to = m.id AND r.author IN ('ai', 'system')
                WHERE m.id = $1
                FOR UPDATE OF m
                """,
                message_id,
            )
            if row is None or row["direction"] != "inbound":
                return Gone()
            if row["reply_id"] is not None:
                return ReplyAlreadyStored(
                    reply_id=row["reply_id"],
                    needs_send=row["reply_status"] in ("pending", "sending"),
                )
            if row["reply_state"] != "pending":
                return ReplySkipped(f"reply state is {row['reply_state']}")
            hotel_row = await conn.fetchrow(
                f"SELECT {HOTEL_COLUMNS} FROM hotels WHERE id = $1",  # noqa: S608
                hotel_id,
            )
            assert hotel_row is not None, "a tenant's own hotel row is always visible"
            hotel = _hotel(hotel_row)
            skip_reason, handoff = None, None
            if hotel.suspended:
                skip_reason = "the hotel is suspended"
            elif row["state"] != "ai":
                skip_reason = f"conversation is {row['state']}"
            elif row["superseded"]:
                skip_reason = "a newer guest message will be answered instead"
            elif not hotel.ai_enabled:
                skip_reason, handoff = (
                    "the assistant is switched off for this hotel",
                    "assistant_off",
                )
            elif row["attempts"] >= max_attempts and not row["claimed"]:
                skip_reason, handoff = f"gave up after {row['attempts']} attempts", "gave_up"
            if handoff is not None:
                await conn.execute(
                    """UPDATE conversations SET state = 'needs_human', handoff_at = now(),
                         awaiting_human_since = COALESCE(awaiting_human_since, now()),
                         handoff_reason = $2
                       WHERE id = $1 AND state = 'ai'""",
                    row["conversation_id"],
                    skip_reason,
                )
            if skip_reason is not None:
                await conn.execute(
                    "UPDATE messages SET reply_state = 'skipped', reply_claimed_until = NULL "
                    "WHERE id = $1",
                    message_id,
                )
                return ReplySkipped(skip_reason, handoff)
            if row["claimed"]:
                return Busy(retry_in=max(1.0, float(row["claimed_for"])))
            await conn.execute(
                """UPDATE messages SET attempts = attempts + 1,
                     reply_claimed_until = now() + make_interval(secs => $2)
                   WHERE id = $1""",
                message_id,
                lease_seconds,
            )
            history = await conn.fetch(
                """
                SELECT author, body FROM (
                  SELECT id, author, body FROM messages
                  WHERE conversation_id = $1 AND id < $2 AND body <> ''
                    AND direction <> 'internal'
                  ORDER BY id DESC LIMIT $3) recent
                ORDER BY id
                """,
                row["conversation_id"],
                message_id,
                history_turns,
            )
            spent = await conn.fetchval(
                """SELECT COALESCE(sum(cost_usd), 0) FROM messages
                   WHERE hotel_id = $1 AND cost_usd IS NOT NULL
                     AND created_at >= hotelchat_month_start($2)""",
                hotel_id,
                hotel.timezone,
            )
            return ReplyClaimed(
                ReplyContext(
                    hotel=hotel,
                    conversation_id=row["conversation_id"],
                    channel=Channel(row["channel"]),
                    question=row["body"],
                    question_language=row["language"],
                    guest_language=row["guest_language"],
                    history=[Turn(Author(h["author"]), h["body"]) for h in history],
                    month_spend_usd=float(spent),
                    media=tuple(
                        media_item(m)
                        for m in await conn.fetch(
                            "SELECT * FROM media WHERE message_id = $1 ORDER BY position",
                            message_id,
                        )
                    ),
                )
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def store_reply(
        self, hotel_id: int, message_id: int, draft: DraftReply
    ) -> ReplyStoreResult:
        """Store the one automated reply to `message_id` (a second call returns the first
        reply), mark the inbound message answered, and hand off when the draft says so. If an
        agent took the conversation over meanwhile, store nothing."""

        async def work(conn: Connection) -> ReplyStoreResult:
            row = await conn.fetchrow(
                """
                SELECT m.conversation_id, c.state FROM messages m
                JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                WHERE m.id = $1 AND m.direction = 'inbound'
                FOR UPDATE OF m, c
                """,
                message_id,
            )
            if row is None:
                return Gone()
            existing = await conn.fetchval(
                "SELECT id FROM messages WHERE in_reply_to = $1 AND author IN ('ai', 'system')",
                message_id,
            )
            if existing is not None:
                return ReplyStored(existing)
            if row["state"] != "ai":
                await conn.execute(
                    "UPDATE messages SET reply_state = 'skipped', reply_claimed_until = NULL "
                    "WHERE id = $1",
                    message_id,
                )
                return ReplySkipped(f"conversation became {row['state']} while answering")
            reply_id = await conn.fetchval(
                """
                INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status,
                                      responder, in_reply_to, language, model, prompt_tokens,
                                      completion_tokens, sources, cost_usd, tool_calls)
                VALUES ($1, $2, 'outbound', $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12,
                        $13)
                RETURNING id
                """,
                hotel_id,
                row["conversation_id"],
                draft.author.value,
                draft.body,
                draft.responder.value,
                message_id,
                draft.language,
                draft.model,
                draft.prompt_tokens,
                draft.completion_tokens,
                json.dumps(
                    [{"id": p.entry_id, "title": p.title, "score": round(p.score, 3)}
                     for p in draft.sources]
                ) if draft.sources else None,
                draft.cost_usd,
                json.dumps(
                    [{"name": t.name, "arguments": dict(t.arguments), "outcome": t.outcome}
                     for t in draft.tool_calls], ensure_ascii=False
                ) if draft.tool_calls else None,
            )  # fmt: skip
            await conn.execute(
                "UPDATE messages SET reply_state = 'answered', reply_claimed_until = NULL "
                "WHERE id = $1",
                message_id,
            )
            await conn.execute(
                """
                UPDATE conversations SET last_message_at = now(),
                  state = CASE WHEN $2::text IS NULL THEN state ELSE 'needs_human' END,
                  handoff_reason = COALESCE($2::text, handoff_reason),
                  handoff_at = CASE WHEN $2::text IS NULL THEN handoff_at ELSE now() END,
                  awaiting_human_since = CASE WHEN $2::text IS NULL THEN awaiting_human_since
                                         ELSE COALESCE(awaiting_human_since, now()) END
                WHERE id = $1
                """,
                row["conversation_id"],
                draft.handoff_reason,
            )
            return ReplyStored(reply_id)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def release_reply(self, hotel_id: int, message_id: int) -> None:
        """Give up the reply lease early, so a retry need not wait for it to expire."""

        async def work(conn: Connection) -> None:
            await conn.execute(
                "UPDATE messages SET reply_claimed_until = NULL WHERE id = $1", message_id
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def renew_reply_lease(
        self, hotel_id: int, message_id: int, *, lease_seconds: float
    ) -> bool:
        """Extend a held reply lease to `lease_seconds` from now. False when there is none to
        extend (answered, skipped or released meanwhile): a renewal never takes a lease."""

        async def work(conn: Connection) -> bool:
            status = await conn.execute(
                """UPDATE messages SET reply_claimed_until = now() + make_interval(secs => $2)
                   WHERE id = $1 AND reply_state = 'pending'
                     AND reply_claimed_until IS NOT NULL""",
                message_id,
                lease_seconds,
            )
            return bool(status == "UPDATE 1")

        return await self.db.tenant(hotel_id, work, idempotent=True)

    # --- sending --------------------------------------------------------------------------------

    async def claim_send(
        self, hotel_id: int, message_id: int, *, lease_seconds: float, max_attempts: int
    ) -> SendClaim:
        """Take the lease on handing outbound message `message_id` to the provider. After
        `max_attempts` claims the message is marked failed and its conversation goes to staff."""

        async def work(conn: Connection) -> SendClaim:
            row = await conn.fetchrow(
                """
                SELECT m.direction, m.status, m.body, m.conversation_id, m.send_attempted_at,
                       m.attempts, m.send_claimed_until > now() AS claimed,
                       extract(epoch FROM m.send_claimed_until - now()) AS claimed_for,
                       c.channel, c.sender_id, g.phone_number,
                       t.content_sid, t.variables AS content_variables
                FROM messages m
                JOIN conversations c ON c.hotel_id = m.hotel_id AND c.id = m.conversation_id
                JOIN guests g ON g.hotel_id = c.hotel_id AND g.id = c.guest_id
                LEFT JOIN outbound_templates t ON t.message_id = m.id
                WHERE m.id = $1
                FOR UPDATE OF m
                """,
                message_id,
            )
            if row is None or row["direction"] != "outbound":
                return Gone()
            if row["status"] not in ("pending", "sending"):
                return AlreadySent(DeliveryStatus(row["status"]))
            if row["claimed"]:
                return Busy(retry_in=max(1.0, float(row["claimed_for"])))
            if row["attempts"] >= max_attempts:
                reason = f"sending gave up after {row['attempts']} attempts"
                await _fail_message(conn, message_id, "gave_up", reason)
                return AlreadySent(DeliveryStatus.FAILED)
            route = None
            if row["sender_id"] is not None:
                sender = await conn.fetchrow(
                    f"SELECT {SENDER_COLUMNS} FROM whatsapp_senders WHERE id = $1",  # noqa: S608
                    row["sender_id"],
                )
                route = None if sender is None else self._route(sender)
            await conn.execute(
                """UPDATE messages SET status = 'sending', send_attempted_at = now(),
                     attempts = attempts + 1,
                     send_claimed_until = now() + make_interval(secs => $2)
                   WHERE id = $1""",
                message_id,
                lease_seconds,
            )
            attachments = await conn.fetch(
                "SELECT * FROM media WHERE message_id = $1 AND state = 'stored' ORDER BY position",
                message_id,
            )
            return SendPlan(
                message_id=message_id,
                conversation_id=row["conversation_id"],
                channel=Channel(row["channel"]),
                body=row["body"],
                to_number=row["phone_number"],
                route=route,
                reconcile_since=row["send_attempted_at"],
                media=tuple(media_item(a) for a in attachments),
                content_sid=row["content_sid"],
                content_variables=(
                    json.loads(row["content_variables"]) if row["content_sid"] else None
                ),
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def record_sent(self, hotel_id: int, message_id: int, sent: SentMessage) -> None:
        """Record the provider's SID and status; a status already further along is kept."""

        async def work(conn: Connection) -> None:
            await conn.execute(
                """
                UPDATE messages SET
                  provider_sid = $2,
                  status = CASE WHEN hotelchat_status_rank($3) > hotelchat_status_rank(status)
                                THEN $3 ELSE status END,
                  sent_at = COALESCE(sent_at, now()),
                  send_claimed_until = NULL
                WHERE id = $1 AND (provider_sid IS NULL OR provider_sid = $2)
                """,
                message_id,
                sent.sid,
                sent.status.value,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def record_send_failure(
        self, hotel_id: int, message_id: int, *, error_code: str, handoff_reason: str
    ) -> bool:
        """Mark the message failed for good and hand its conversation to staff (True when
        this handed it off; False when it was already with staff)."""

        async def work(conn: Connection) -> bool:
            return await _fail_message(conn, message_id, error_code, handoff_reason)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def record_delivered(self, hotel_id: int, message_id: int) -> None:
        """A web-chat message is delivered once stored: the guest's browser fetches it."""

        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE messages SET status = 'delivered', sent_at = now(),
                     delivered_at = now(), send_claimed_until = NULL
                   WHERE id = $1 AND hotelchat_status_rank(status) < 5""",
                message_id,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def release_send(self, hotel_id: int, message_id: int, *, maybe_sent: bool) -> None:
        """Give the send back after a retryable failure. Unless the provider may have taken the
        message (`maybe_sent`), forget the attempt so the retry need not look for it first."""

        async def work(conn: Connection) -> None:
            await conn.execute(
                """UPDATE messages SET status = 'pending', send_claimed_until = NULL,
                     send_attempted_at = CASE WHEN $2 THEN send_attempted_at END
                   WHERE id = $1 AND status = 'sending'""",
                message_id,
                maybe_sent,
            )

        await self.db.tenant(hotel_id, work, idempotent=True)

    async def renew_send_lease(
        self, hotel_id: int, message_id: int, *, lease_seconds: float
    ) -> bool:
        """Extend a held send lease to `lease_seconds` from now. False when there is none to
        extend (sent, failed or released meanwhile)."""

        async def work(conn: Connection) -> bool:
            status = await conn.execute(
                """UPDATE messages SET send_claimed_until = now() + make_interval(secs => $2)
                   WHERE id = $1 AND status = 'sending' AND send_claimed_until IS NOT NULL""",
                message_id,
                lease_seconds,
            )
            return bool(status == "UPDATE 1")

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def apply_delivery_status(
        self,
        hotel_id: int,
        *,
        message_id: int | None,
        sid: str,
        status: DeliveryStatus,
        error_code: str | None,
    ) -> StatusUpdate | None:
        """Move an outbound message (by our id when given, else by MessageSid) to `status` if
        that is forwards. A failure hands the conversation to staff."""

        async def work(conn: Connection) -> StatusUpdate | None:
            row = await conn.fetchrow(
                """
                UPDATE messages SET
                  status = $3,
                  provider_sid = COALESCE(provider_sid, $2),
                  error_code = COALESCE($4, error_code),
                  delivered_at = CASE WHEN $3 IN ('delivered', 'read')
                                      THEN COALESCE(delivered_at, now()) ELSE delivered_at END,
                  read_at = CASE WHEN $3 = 'read' THEN COALESCE(read_at, now()) ELSE read_at END
                WHERE direction = 'outbound'
                  AND CASE WHEN $1::bigint IS NULL THEN provider_sid = $2
                           ELSE id = $1 AND (provider_sid IS NULL OR provider_sid = $2) END
                  AND hotelchat_status_rank($3) > hotelchat_status_rank(status)
                RETURNING id, conversation_id, status
                """,
                message_id,
                sid,
                status.value,
                error_code,
            )
            if row is None:
                return None
            handed_off = False
            if status in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED):
                handed_off = (
                    await conn.execute(
                        """UPDATE conversations SET state = 'needs_human', handoff_at = now(),
                             awaiting_human_since = COALESCE(awaiting_human_since, now()),
                             handoff_reason = 'a reply could not be delivered'
                           WHERE id = $1 AND state = 'ai'""",
                        row["conversation_id"],
                    )
                    == "UPDATE 1"
                )
            return StatusUpdate(
                row["id"], row["conversation_id"], DeliveryStatus(row["status"]), handed_off
            )

        return await self.db.tenant(hotel_id, work, idempotent=True)

    # --- knowledge ------------------------------------------------------------------------------

    async def search(self, hotel_id: int, question: str, *, limit: int) -> list[Passage]:
        """Knowledge-base entries matching any word of `question`, best first (PostgreSQL
        full-text search in the hotel's text-search configuration). `score` is the cover-density
        rank scaled into [0, 1) as rank / (rank + 1)."""
        words = _WORD.findall(question.lower())[:MAX_QUERY_WORDS]
        if not words:
            return []

        async def work(conn: Connection) -> list[Passage]:
            rows = await conn.fetch(
                """
                WITH q AS (
                  SELECT websearch_to_tsquery(h.search_config, $1) AS query FROM hotels h
                )
                SELECT e.id, e.title, e.body, ts_rank_cd(e.search, q.query, 32) AS score
                FROM kb_entries e, q
                WHERE e.search @@ q.query
                ORDER BY score DESC, e.id
                LIMIT $2
                """,
                " or ".join(words),
                limit,
            )
            return [Passage(r["id"], r["title"], r["body"], float(r["score"])) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)


async def _fail_message(
    conn: Connection, message_id: int, error_code: str, handoff_reason: str
) -> bool:
    conversation_id = await conn.fetchval(
        """UPDATE messages SET status = 'failed', error_code = $2, send_claimed_until = NULL
           WHERE id = $1 RETURNING conversation_id""",
        message_id,
        error_code[:64],
    )
    if conversation_id is None:
        return False
    return (
        await conn.execute(
            """UPDATE conversations SET state = 'needs_human', handoff_at = now(),
                 awaiting_human_since = COALESCE(awaiting_human_since, now()),
                 handoff_reason = $2
               WHERE id = $1 AND state IN ('ai', 'resolved')""",
            conversation_id,
            handoff_reason[:500],
        )
        == "UPDATE 1"
    )
