"""Opt-out and opt-in: a guest's STOP / START (in any configured language) changes whether the
hotel may send them proactive messages (templates, journeys), with one confirmation per change.

The reply job calls `handle_keyword` before the assistant sees the message: a keyword is never
answered by the model. The change and its confirmation are stored in one transaction as the
keyword message's automated reply, so a replayed MessageSid or a re-run job changes nothing and
confirms nothing twice; a keyword that changes nothing (STOP from a guest already opted out)
gets no confirmation. Replies to a guest's own messages inside the 24-hour window stay allowed;
code that sends proactively asks `is_opted_out` (or `check_may_message_proactively`) first.

Twilio's own STOP handling (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out)
is documented for SMS long codes in Messaging Services, not for WhatsApp senders: see
`domain.consent`.
"""

from __future__ import annotations

import structlog

from hotelchat.domain.consent import ConsentAction, confirmation
from hotelchat.domain.errors import Conflict
from hotelchat.services import notify, outbound
from hotelchat.services.ports import Consent, ConsentChanged, ConsentUnchanged, Deps, Gone

log = structlog.get_logger(__name__)


class OptedOut(Conflict):
    """The guest opted out of the hotel's proactive messages."""


async def consent(deps: Deps, hotel_id: int, guest_id: int) -> Consent:
    """Guest `guest_id`'s standing with hotel `hotel_id` (never opted out: `opted_out=False`)."""
    if deps.consents is None:
        return Consent(opted_out=False)
    return await deps.consents.consent(hotel_id, guest_id)


async def is_opted_out(deps: Deps, hotel_id: int, guest_id: int) -> bool:
    """True when guest `guest_id` opted out of hotel `hotel_id`'s proactive messages (templates,
    journeys). Another hotel's opt-out never counts: each hotel has its own. Raises
    `Unavailable` when PostgreSQL is down."""
    return (await consent(deps, hotel_id, guest_id)).opted_out


async def is_number_opted_out(deps: Deps, hotel_id: int, phone_number: str) -> bool:
    """True when the hotel's guest with WhatsApp number `phone_number` (E.164) opted out of its
    proactive messages; for journeys, whose reservation may have no guest row yet (then nobody
    opted out). Raises `Unavailable` when PostgreSQL is down."""
    if deps.consents is None:
        return False
    return await deps.consents.number_opted_out(hotel_id, phone_number)


async def check_may_message_proactively(deps: Deps, hotel_id: int, guest_id: int) -> None:
    """Raises `OptedOut` (a `Conflict`) when the guest opted out of the hotel's proactive
    messages; for template and journey sends."""
    if await is_opted_out(deps, hotel_id, guest_id):
        raise OptedOut("the guest opted out of proactive messages")


async def handle_keyword(deps: Deps, hotel_id: int, message_id: int) -> str | None:
    """If inbound message `message_id` is an opt-out or opt-in keyword, apply it and send the
    confirmation; returns what happened (`opted out`, `opted in`, `unchanged`, …) for logs and
    tests, or None when the message is no keyword (the assistant answers it as usual).

    Raises `TemporaryFailure` (sending the confirmation is retried) and `Unavailable`."""
    if deps.consents is None:
        return None
    candidate = await deps.consents.inbound_keyword_candidate(hotel_id, message_id)
    if candidate is None:
        return None
    body, message_language = candidate
    match = deps.opt_out_keywords.match(body)
    if match is None:
        return None
    language = match.language([message_language])
    opted_out = match.action is ConsentAction.OPT_OUT
    result = await deps.consents.apply_keyword(
        hotel_id,
        message_id,
        opted_out=opted_out,
        keyword=match.keyword,
        confirmation=confirmation(match.action, language),
        language=language,
    )
    match result:
        case Gone():
            return "gone"
        case ConsentUnchanged(conversation_id, reply_id, needs_send):
            if reply_id is not None and needs_send:
                return await outbound.send_outbound(deps, hotel_id, reply_id)
            log.info("consent.unchanged", hotel_id=hotel_id, message_id=message_id)
            await notify.conversation_touched(deps, hotel_id, conversation_id)
            return "unchanged"
        case ConsentChanged(reply_id, conversation_id, _):
            pass
    outcome = "opted out" if opted_out else "opted in"
    log.info("consent.changed", hotel_id=hotel_id, message_id=message_id, outcome=outcome)
    await notify.message_added(deps, hotel_id, conversation_id, reply_id, guest_channel=None)
    sent = await outbound.send_outbound(deps, hotel_id, reply_id)
    return f"{outcome}; confirmation {sent}"
