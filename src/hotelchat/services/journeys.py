"""Journeys: templates a hotel sends relative to its reservations ("the day before arrival at
10:00, hotel time"), each once per reservation, never to a guest who opted out.

The worker's cron calls `run_due` every minute. For each reservation whose message is due, one
transaction claims the (journey, reservation) row and stores the outbound template message
(`TemplateStore.claim_journey_send`); the message then goes through the outbound exactly-once
path (`services.outbound`), its job queued after the commit and, if that is lost, by the sweeper.
A worker that dies anywhere in between leaves either nothing (claimed again next minute) or a
stored message (sent once, reconciled with Twilio if the send was under way).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog

from hotelchat.domain.errors import InvalidInput, Unavailable
from hotelchat.domain.templates import (
    TEMPLATE_NAME,
    Journey,
    Template,
    check_journey_mapping,
    check_variables,
    choose,
    due_at,
    reservation_values,
)
from hotelchat.services import consent
from hotelchat.services.ports import Deps, DueStay
from hotelchat.services.templates import registry

log = structlog.get_logger(__name__)

# A message not sent within this long of being due (the worker was down, the reservation was
# imported late) is not sent at all: a "see you tomorrow" two days late is worse than none.
MAX_LATENESS = timedelta(hours=12)


def check_journey(journey: Journey) -> Journey:
    """`journey` if well formed; raises `InvalidInput`."""
    if not TEMPLATE_NAME.fullmatch(journey.name):
        raise InvalidInput("the journey's name may use letters, digits, _ . - (up to 100)")
    if len(journey.name) > 100:
        raise InvalidInput("the journey's name is longer than 100 characters")
    if not TEMPLATE_NAME.fullmatch(journey.template_name):
        raise InvalidInput("the template name is malformed")
    if journey.anchor not in ("check_in", "check_out"):
        raise InvalidInput("anchor must be check_in or check_out")
    if not -60 <= journey.offset_days <= 60:
        raise InvalidInput("the offset must be within 60 days of the anchor")
    if (journey.quiet_start is None) != (journey.quiet_end is None):
        raise InvalidInput("quiet hours need a start and an end")
    check_journey_mapping(journey.variables)
    return journey


def parse_clock(value: str, what: str) -> time:
    """`HH:MM` as a time; raises `InvalidInput` naming `what`."""
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} must be HH:MM") from None
    if len(value) != 5:
        raise InvalidInput(f"{what} must be HH:MM")
    return parsed


async def run_due(deps: Deps, now: datetime) -> int:
    """Send every journey message due at `now` (aware) in every hotel; returns how many were
    queued. A hotel that fails is logged and left for the next run."""
    queued = 0
    for hotel_id in await registry(deps).journey_hotels():
        try:
            queued += await run_hotel(deps, hotel_id, now)
        except Unavailable:
            raise
        except Exception:  # one hotel's bad data must not stop the others
            log.exception("journeys.hotel_failed", hotel_id=hotel_id)
    return queued


async def run_hotel(deps: Deps, hotel_id: int, now: datetime) -> int:
    """Run the hotel's enabled journeys at `now`; returns how many messages were queued."""
    hotel = await deps.store.hotel_profile(hotel_id)
    if hotel is None or hotel.suspended:
        return 0
    today = now.astimezone(ZoneInfo(hotel.timezone)).date()
    templates = await registry(deps).templates(hotel_id)
    queued = 0
    for journey in await registry(deps).journeys(hotel_id):
        if not journey.enabled:
            continue
        for stay in await registry(deps).due_stays(hotel_id, journey, today):
            due = due_at(journey, stay.anchor, hotel.timezone)
            if not due <= now < due + MAX_LATENESS:
                continue
            message_id = await _handle(deps, hotel_id, journey, stay, templates,
                                       hotel.default_language)  # fmt: skip
            if message_id is None:
                continue
            queued += 1
            try:
                await deps.jobs.enqueue_send(hotel_id, message_id)
            except Unavailable:
                log.warning("journey.enqueue_failed", message_id=message_id)  # the sweeper
    return queued


async def _handle(
    deps: Deps,
    hotel_id: int,
    journey: Journey,
    stay: DueStay,
    templates: Sequence[Template],
    default_language: str,
) -> int | None:
    store = registry(deps)
    if not stay.phone_number:
        await store.claim_journey_send(hotel_id, journey.id, stay, outcome="no_phone")
        return None
    if await consent.is_number_opted_out(deps, hotel_id, stay.phone_number):
        await store.claim_journey_send(hotel_id, journey.id, stay, outcome="opted_out")
        log.info("journey.opted_out", hotel_id=hotel_id, journey=journey.name)
        return None
    template = choose(templates, journey.template_name, [stay.guest_language, default_language])
    if template is None:
        await store.claim_journey_send(hotel_id, journey.id, stay, outcome="no_template")
        log.warning("journey.no_template", hotel_id=hotel_id, journey=journey.name)
        return None
    try:
        # A variant may use fewer placeholders than the journey maps: the others are dropped.
        mapped = reservation_values(stay.fields, journey.variables)
        wanted = {k: v for k, v in mapped.items() if k in template.placeholders}
        values = check_variables(template, wanted)
    except InvalidInput as exc:
        await store.claim_journey_send(hotel_id, journey.id, stay, outcome="invalid_variables")
        log.warning("journey.invalid_variables", hotel_id=hotel_id, journey=journey.name,
                    error=exc.message)  # fmt: skip
        return None
    message_id = await store.claim_journey_send(
        hotel_id, journey.id, stay, outcome="queued", template=template, variables=values
    )
    if message_id is not None:
        log.info("journey.queued", hotel_id=hotel_id, journey=journey.name, message_id=message_id)
    return message_id
