"""A hotel's reservations: imported from its property-management system (a CSV export today,
any `ReservationSource` tomorrow), looked up for the guest of one conversation by the
assistant's `lookup_reservation` tool, and tied to a web-chat guest by a link the hotel sends.

Which reservations a guest sees is decided by who they are, never by what they (or the model)
say: a WhatsApp guest by the number Twilio delivered their message from, a web-chat guest by the
signed link that tied a reservation to their chat. A link is signed with SECRET_KEY for one
hotel and one reservation code, valid 30 days; it moves a reservation already tied to another
chat only when it was issued later than the link that tied it, so a used link that leaks takes
nothing over, while the hotel can always send the guest a fresh one.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Literal, get_args
from urllib.parse import quote, urlsplit

import structlog

from hotelchat.domain.addresses import is_e164
from hotelchat.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from hotelchat.services.ports import Deps, Reservation, ReservationSource, WebGuest

log = structlog.get_logger(__name__)

LINK_PURPOSE = "hotelchat.reservation-link"
LINK_MAX_AGE = 30 * 24 * 3600  # seconds
LINK_PARAMETER = "r"  # the chat page reads the link from `#r=…` (or `?r=…`)
# On a page of the hotel's website that carries embed.js, the widget reads `#hotelchat-r=…`:
# a name of our own, so that it cannot clash with the website's own use of its fragment.
SITE_LINK_PARAMETER = "hotelchat-r"
MAX_SITE_URL = 2000  # characters
MAX_IMPORT = 10_000  # reservations per import

StatusName = Literal["confirmed", "checked_in", "checked_out", "cancelled"]
STATUSES: tuple[StatusName, ...] = get_args(StatusName)  # as `Reservation.status`, and the table
CODE = re.compile(r"[A-Za-z0-9-]{3,40}")
MAX_NAME, MAX_EMAIL, MAX_ROOM_TYPE, MAX_NOTES, MAX_GUESTS = 200, 254, 100, 2000, 50


def check_code(code: str) -> str:
    """`code` if it is a reservation code (3 to 40 letters, digits or hyphens); else raises
    `InvalidInput`."""
    if not CODE.fullmatch(code):
        raise InvalidInput("code must be 3 to 40 letters, digits or hyphens")
    return code


def check_reservation(r: Reservation) -> Reservation:
    """`r` if every field is within what a reservation may hold; raises `InvalidInput` naming
    the first field that is not (without its value: it may be personal data)."""
    check_code(r.code)
    if not 1 <= len(r.guest_name) <= MAX_NAME or not r.guest_name.strip():
        raise InvalidInput(f"guest_name must be 1 to {MAX_NAME} characters")
    if r.check_out <= r.check_in:
        raise InvalidInput("check_out must be after check_in")
    if r.status not in STATUSES:
        raise InvalidInput("status must be one of " + ", ".join(STATUSES))
    if r.room_type is not None and len(r.room_type) > MAX_ROOM_TYPE:
        raise InvalidInput(f"room_type must be at most {MAX_ROOM_TYPE} characters")
    for name, count in (("adults", r.adults), ("children", r.children)):
        if isinstance(count, bool) or not 0 <= count <= MAX_GUESTS:
            raise InvalidInput(f"{name} must be a whole number from 0 to {MAX_GUESTS}")
    if r.phone_number is not None and not is_e164(r.phone_number):
        raise InvalidInput("phone_number must be E.164, such as +34612345678")
    if r.email is not None and (len(r.email) > MAX_EMAIL or not _looks_like_email(r.email)):
        raise InvalidInput(f"email must be an address of at most {MAX_EMAIL} characters")
    if r.notes is not None and len(r.notes) > MAX_NOTES:
        raise InvalidInput(f"notes must be at most {MAX_NOTES} characters")
    return r


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and not any(c.isspace() for c in value))


async def import_reservations(
    deps: Deps, hotel_id: int, source: ReservationSource
) -> tuple[int, int]:
    """Add or update the hotel's reservations from `source`, by code; returns (added,
    updated). All or nothing: raises `InvalidInput` naming the record at fault (or when there
    are more than 10,000), and nothing is stored then."""
    found: list[Reservation] = []
    seen: set[str] = set()
    async for reservation in source.reservations():
        if len(found) >= MAX_IMPORT:
            raise InvalidInput(f"at most {MAX_IMPORT} reservations per import; split the file")
        try:
            check_reservation(reservation)
        except InvalidInput as exc:
            raise InvalidInput(f"reservation {reservation.code!r}: {exc.message}") from None
        if reservation.code in seen:
            raise InvalidInput(f"reservation {reservation.code!r} is given twice")
        seen.add(reservation.code)
        found.append(reservation)
    if not found:
        return 0, 0
    added, updated = await deps.reservations.upsert_many(hotel_id, found, source=source.name)
    log.info(
        "reservations.imported",
        hotel_id=hotel_id,
        source=source.name,
        added=added,
        updated=updated,
    )
    return added, updated


async def guest_reservations(deps: Deps, hotel_id: int, conversation_id: int) -> list[Reservation]:
    """The current and coming reservations of the guest of `conversation_id` (at most 5, those
    staying now first), matched by their WhatsApp number or their linked web-chat identity.
    Staff notes are never included. Empty for another hotel's conversation."""
    return await deps.reservations.of_conversation(hotel_id, conversation_id)


# --- web-chat links ------------------------------------------------------------------------


def link_token(deps: Deps, hotel_slug: str, code: str) -> str:
    """A signed token that ties reservation `code` of hotel `hotel_slug` to the web-chat guest
    who opens the chat with it, valid 30 days. Raises `InvalidInput` for a malformed code, and
    `ConfigError` when SECRET_KEY is not set."""
    issued_ms = int(time.time() * 1000)
    return deps.tokens.sign(LINK_PURPOSE, {"s": hotel_slug, "c": check_code(code), "t": issued_ms})


async def link_url(
    deps: Deps,
    hotel_id: int,
    hotel_slug: str,
    code: str,
    *,
    base_url: str,
    site_url: str | None = None,
) -> str:
    """The URL that links reservation `code` to whoever opens it: HotelChat's chat page,
    `<base_url>/chat/<slug>#r=<token>`, or with `site_url` a page of the hotel's website that
    carries embed.js, `<site_url>#hotelchat-r=<token>`, where the widget opens with the link.
    The token travels in the URL's fragment, which browsers never send to a server, so it stays
    out of access logs, traces and Referer headers. Raises `NotFound` when the hotel has no such
    reservation, `InvalidInput` for a malformed code or a `site_url` that is not an absolute
    http(s) URL without a fragment."""
    page = None if site_url is None else check_site_url(site_url)
    if await deps.reservations.find(hotel_id, check_code(code)) is None:
        raise NotFound(f"no reservation {code!r} in {hotel_slug}")
    token = link_token(deps, hotel_slug, code)
    if page is not None:
        return f"{page}#{SITE_LINK_PARAMETER}={token}"
    return f"{base_url.rstrip('/')}/chat/{quote(hotel_slug)}#{LINK_PARAMETER}={token}"


def check_site_url(url: str) -> str:
    """`url`, a page of the hotel's website, when it is an absolute http(s) URL with a host, no
    fragment (the link's own place) and at most `MAX_SITE_URL` characters; else `InvalidInput`."""
    if len(url) > MAX_SITE_URL or any(c.isspace() for c in url):
        raise InvalidInput(
            "the website page must be a URL without spaces, 2,000 characters at most"
        )
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError as exc:
        raise InvalidInput("the website page is not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not has_host:
        raise InvalidInput("the website page must be an http:// or https:// URL with a host")
    if parts.fragment or url.endswith("#"):
        raise InvalidInput("the website page must not have a #fragment: the link goes there")
    return url


async def redeem_link(deps: Deps, guest: WebGuest, token: str) -> bool:
    """Tie the reservation a link names to web-chat `guest`. True when it is tied to them (now,
    or already: the same guest opening the same link again changes nothing); False when the
    hotel has no such reservation (any more). Raises `Unauthenticated` for a forged, malformed
    or expired link and `Forbidden` for a link of another hotel, or one already used by
    another chat after which no newer link was issued; nothing is linked then."""
    data = deps.tokens.verify(LINK_PURPOSE, token, max_age_seconds=LINK_MAX_AGE)
    slug, code, issued_ms = data.get("s"), data.get("c"), data.get("t")
    if (
        not isinstance(slug, str)
        or not isinstance(code, str)
        or not isinstance(issued_ms, int)
        or isinstance(issued_ms, bool)
    ):
        raise Unauthenticated("bad reservation link")
    if slug != guest.hotel_slug:
        raise Forbidden("this reservation link is for another hotel")
    issued_at = datetime.fromtimestamp(issued_ms / 1000, UTC)
    try:
        linked = await deps.reservations.link_web_guest(
            guest.hotel_id, code, guest.web_id, issued_at=issued_at
        )
    except Conflict:
        raise Forbidden("this reservation link was used in another chat") from None
    log.info(
        "reservations.linked" if linked else "reservations.link_unknown_code",
        hotel_id=guest.hotel_id,
        conversation_id=guest.conversation_id,
    )
    return linked
