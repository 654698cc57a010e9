"""The guest web chat: the hotel website's second channel, next to WhatsApp.

A guest is identified by a signed token their browser keeps (hotel id + a random guest id, signed
with SECRET_KEY): bringing it back shows their history. Their messages become inbound messages of
a `web` conversation, answered by the same reply job as WhatsApp and shown in the same dashboard;
replies reach them over Socket.IO instead of Twilio.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from hotelchat.domain.errors import (
    HotelChatError,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from hotelchat.domain.model import Channel
from hotelchat.observability import metrics
from hotelchat.services import media, notify, reservations
from hotelchat.services.inbox import check_body, check_client_id
from hotelchat.services.ports import Deps, InboundRecord, MessageView, WebGuest

log = structlog.get_logger(__name__)

TOKEN_PURPOSE = "hotelchat.web-guest"  # noqa: S105 - a salt name, not a secret
TOKEN_MAX_AGE = 180 * 24 * 3600  # a returning guest keeps their history for six months
MESSAGES_PER_GUEST = "20/minute"
SESSIONS_PER_CLIENT = "30/hour"
MAX_NAME = 80


@dataclass(frozen=True, slots=True)
class GuestSession:
    token: str
    guest: WebGuest
    hotel_slug: str
    reservation_linked: bool | None = None  # None: no reservation link was given


async def hotel_id_for(deps: Deps, slug: str) -> int:
    """The hotel behind a public chat URL; raises `NotFound`."""
    if not slug or len(slug) > 63:
        raise NotFound("no such hotel")
    hotel_id = await deps.store.route_hotel(slug)
    if hotel_id is None:
        raise NotFound("no such hotel")
    return hotel_id


async def hotel_name(deps: Deps, slug: str) -> str:
    """The name a chat page greets with; raises `NotFound`."""
    profile = await deps.store.hotel_profile(await hotel_id_for(deps, slug))
    if profile is None:
        raise NotFound("no such hotel")
    return profile.name


async def start(
    deps: Deps,
    slug: str,
    *,
    token: str | None,
    name: str | None,
    client: str,
    reservation_link: str | None = None,
) -> GuestSession:
    """Resume the guest a valid `token` names, or welcome a new one. A token for another hotel,
    forged or expired, starts a new guest rather than failing. With `reservation_link` (the
    `#r=` of a link the hotel sent), the guest's chat is tied to that reservation; a link that
    does not verify is logged and ignored, and the guest chats unlinked. Raises `NotFound` (no
    such hotel) or `TooManyRequests` (too many new guests from this client)."""
    hotel_id = await hotel_id_for(deps, slug)
    display_name = (name or "").strip()[:MAX_NAME] or None
    if token:
        try:
            guest = await guest_for(deps, hotel_id, token)
        except (Unauthenticated, NotFound):
            pass
        else:
            return await _with_reservation(deps, GuestSession(token, guest, slug), reservation_link)
    if not await deps.limiter.hit(f"webchat-session:{client}", limit=SESSIONS_PER_CLIENT):
        raise TooManyRequests("too many new chats from here; try again later")
    guest = await deps.inbox.web_guest(hotel_id, None, display_name)
    token = deps.tokens.sign(TOKEN_PURPOSE, {"h": hotel_id, "g": guest.web_id})
    log.info("webchat.started", hotel_id=hotel_id, conversation_id=guest.conversation_id)
    return await _with_reservation(deps, GuestSession(token, guest, slug), reservation_link)


async def _with_reservation(deps: Deps, session: GuestSession, link: str | None) -> GuestSession:
    """`session`, its guest tied to the reservation of `link` when that verifies. A failing
    link never fails the chat: it is logged (its code, never the link) and the guest chats on."""
    if link is None:
        return session
    try:
        linked = await reservations.redeem_link(deps, session.guest, link)
    except HotelChatError as exc:
        log.warning(
            "webchat.reservation_link_refused",
            hotel_id=session.guest.hotel_id,
            conversation_id=session.guest.conversation_id,
            error=exc.code,
        )
        linked = False
    return replace(session, reservation_linked=linked)


async def guest_for(deps: Deps, hotel_id: int, token: str) -> WebGuest:
    """The guest a token names, who must belong to `hotel_id`; raises `Unauthenticated`."""
    data = deps.tokens.verify(TOKEN_PURPOSE, token, max_age_seconds=TOKEN_MAX_AGE)
    web_id = data.get("g")
    if data.get("h") != hotel_id or not isinstance(web_id, str):
        raise Unauthenticated("this chat belongs to another hotel")
    try:
        uuid.UUID(web_id)
    except ValueError:
        raise Unauthenticated("bad token") from None
    try:
        return await deps.inbox.web_guest(hotel_id, web_id, None)
    except NotFound:
        raise Unauthenticated("unknown guest") from None


async def guest_from_token(deps: Deps, token: str) -> WebGuest:
    """The guest a token names, whatever their hotel (Socket.IO connect); `Unauthenticated`."""
    data = deps.tokens.verify(TOKEN_PURPOSE, token, max_age_seconds=TOKEN_MAX_AGE)
    hotel_id = data.get("h")
    if not isinstance(hotel_id, int):
        raise Unauthenticated("bad token")
    return await guest_for(deps, hotel_id, token)


async def send(
    deps: Deps, guest: WebGuest, *, body: str, client_id: str, attachments: Sequence[str] = ()
) -> InboundRecord:
    """Store the guest's message once per `client_id`, with the photos that the upload tokens
    `attachments` name (the text may then be empty), and queue the assistant's reply.
    Raises `InvalidInput`, `Forbidden` (another conversation's upload) or `TooManyRequests`."""
    files = media.redeem_uploads(deps, guest.hotel_id, guest.conversation_id, list(attachments))
    text = "" if files and not body.strip() else check_body(body)
    client_id = check_client_id(client_id)
    if not await deps.limiter.hit(f"webchat-guest:{guest.guest_id}", limit=MESSAGES_PER_GUEST):
        raise TooManyRequests("you are sending messages too fast; wait a moment")
    record = await deps.inbox.record_inbound_web(
        guest,
        body=text,
        client_id=client_id,
        language=deps.languages.detect(text) if text else None,
        attachments=files,
    )
    if record.duplicate or record.message_id is None:
        return record
    metrics.INBOUND_MESSAGES.labels(guest.hotel_slug, Channel.WEB.value).inc()
    try:
        await deps.jobs.enqueue_reply(guest.hotel_id, record.message_id)
    except Unavailable:
        log.warning("webchat.enqueue_failed", message_id=record.message_id)
    await notify.message_added(
        deps, guest.hotel_id, guest.conversation_id, record.message_id, guest_channel=Channel.WEB
    )
    return record


async def history(
    deps: Deps, guest: WebGuest, *, after: int | None, limit: int
) -> list[MessageView]:
    """The guest's own conversation, internal notes never included."""
    return await deps.inbox.messages(
        guest.hotel_id,
        guest.conversation_id,
        after=after,
        before=None,
        limit=max(1, min(limit, 100)),
        include_internal=False,
    )
