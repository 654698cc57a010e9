"""Hand one stored outbound message to the guest's channel, exactly once.

The job takes a lease on the message in PostgreSQL (renewed while the send is under way, see
`services.leases`), sends, and records the provider's MessageSid.
If an earlier attempt may have reached Twilio without us learning the outcome (the worker died,
or the request timed out), the message is looked up at Twilio before anything is sent again.
Retries are bounded by `Deps.max_attempts`; a message that cannot be sent ends `failed` and its
conversation goes to staff.

A WhatsApp message over Twilio's 1,600 characters (error 21617,
https://www.twilio.com/docs/api/errors/21617) goes out as ordered parts (`domain.splitting`).
The parts are stored before the first is sent, each with its own state; each part is sent at
most once, in order: a job re-run after a worker died sends only the parts without a MessageSid,
looking a part up at Twilio first when an earlier attempt may have sent it. The message's status
is its parts' (the least advanced; a failed part fails it).

Every send waits for its sender number's pace (`Deps.pacer`): Twilio queues what exceeds a
WhatsApp sender's throughput, 80 messages per second by default
(https://www.twilio.com/docs/whatsapp/best-practices-and-faqs), and answers 429 / 20429 past
its API concurrency (retried by the adapter, then by the job).

A template message (`SendPlan.content_sid`) is sent with ContentSid
and ContentVariables, and looked for when reconciling by its rendered preview. A 63016 (outside
the 24-hour window) closes the conversation's window and tells staff to use a template.
"""

from __future__ import annotations

import structlog

from hotelchat.domain.errors import SendError, TemporaryFailure
from hotelchat.domain.model import MAX_OUTBOUND_CHARS, Channel, DeliveryStatus
from hotelchat.domain.splitting import split_message
from hotelchat.observability import metrics
from hotelchat.services import leases, media, notify, templates
from hotelchat.services.ports import AlreadySent, Busy, Deps, Gone, MessageParts, SendPlan

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 10.0
# Twilio: outside the 24-hour window, only a template may be sent.
# https://www.twilio.com/docs/api/errors/63016
OUTSIDE_WINDOW = 63016


def status_callback(deps: Deps, message_id: int, part: int | None = None) -> str | None:
    """The StatusCallback URL for one message (or one `part` of it, 0-based): Twilio signs the
    whole URL, so the ids in it are as trustworthy as the rest of the callback, and they arrive
    even before we stored the MessageSid."""
    if deps.status_callback_url is None:
        return None
    url = f"{deps.status_callback_url}?message_id={message_id}"
    return url if part is None else f"{url}&part={part}"


async def send_outbound(deps: Deps, hotel_id: int, message_id: int) -> str:
    """Send outbound message `message_id` unless it was sent already. Returns what happened
    (`sent`, `reconciled`, `already sent`, `failed: …`). Raises `TemporaryFailure` to be
    retried later, `Unavailable` when PostgreSQL is down."""
    claim = await deps.store.claim_send(
        hotel_id,
        message_id,
        lease_seconds=deps.reply_lease_seconds,
        max_attempts=deps.max_attempts,
    )
    match claim:
        case Gone():
            return "gone"
        case AlreadySent(status):
            return f"already {status.value}"
        case Busy(retry_in):
            raise TemporaryFailure("another job is sending", defer_seconds=retry_in)
        case SendPlan():
            plan = claim
    if plan.channel is Channel.WEB:
        await deps.store.record_delivered(hotel_id, message_id)
        await notify.message_added(
            deps, hotel_id, plan.conversation_id, message_id, guest_channel=Channel.WEB
        )
        await notify.status_changed(
            deps, plan.conversation_id, message_id, DeliveryStatus.DELIVERED
        )
        return "delivered"
    if plan.route is None or plan.to_number is None:
        await deps.store.record_send_failure(
            hotel_id, message_id, error_code="no_route", handoff_reason="the message has no route"
        )
        return "failed: no route"
    # If PostgreSQL fails around the send (`Unavailable` propagates), the lease and
    # `send_attempted_at` make the retry look the message up at Twilio before sending it again.
    lease = deps.reply_lease_seconds
    try:
        async with leases.kept_alive(
            lambda: deps.store.renew_send_lease(hotel_id, message_id, lease_seconds=lease),
            every=leases.renew_every(lease),
            for_at_most=deps.lease_renewal_limit_seconds,
            what="send",
        ):
            return await _send_whatsapp(deps, hotel_id, plan)
    except SendError as exc:
        if exc.retryable:
            await deps.store.release_send(hotel_id, message_id, maybe_sent=exc.maybe_sent)
            log.warning(
                "send.retry",
                hotel_id=hotel_id,
                message_id=message_id,
                error_class=type(exc.__cause__ or exc).__name__,
                provider_code=exc.provider_code,
                status=exc.status,
            )
            metrics.TWILIO_SENDS.labels("retry", str(exc.provider_code or "")).inc()
            raise TemporaryFailure(
                "the provider failed", defer_seconds=RETRY_AFTER_SECONDS
            ) from exc
        code = f"twilio_{exc.provider_code}" if exc.provider_code else f"http_{exc.status}"
        window_closed = exc.provider_code == OUTSIDE_WINDOW
        handed_off = await deps.store.record_send_failure(
            hotel_id,
            message_id,
            error_code=code,
            handoff_reason=(
                templates.WINDOW_CLOSED_REASON
                if window_closed
                else f"the message could not be delivered ({code})"
            ),
        )
        if window_closed and deps.templates is not None:
            await templates.window_closed(deps, hotel_id, message_id)
        log.warning("send.failed", hotel_id=hotel_id, message_id=message_id, error_code=code)
        metrics.TWILIO_SENDS.labels("failed", str(exc.provider_code or "")).inc()
        if handed_off:
            metrics.HANDOFFS.labels(plan.route.hotel_slug or str(hotel_id), "delivery_failed").inc()
        await notify.status_changed(deps, plan.conversation_id, message_id, DeliveryStatus.FAILED)
        await notify.conversation_touched(deps, hotel_id, plan.conversation_id)
        return f"failed: {code}"


async def _send_whatsapp(deps: Deps, hotel_id: int, plan: SendPlan) -> str:
    assert plan.route is not None
    assert plan.to_number is not None
    if len(plan.body) > MAX_OUTBOUND_CHARS and deps.parts is not None:
        return await _send_parts(deps, deps.parts, hotel_id, plan)
    if plan.reconcile_since is not None:
        found = await deps.whatsapp.find_sent(
            plan.route, to_number=plan.to_number, body=plan.body, since=plan.reconcile_since
        )
        if found is not None:
            await deps.store.record_sent(hotel_id, plan.message_id, found)
            log.info("send.reconciled", hotel_id=hotel_id, message_id=plan.message_id)
            metrics.TWILIO_SENDS.labels("reconciled", "").inc()
            await notify.status_changed(deps, plan.conversation_id, plan.message_id, found.status)
            return "reconciled"
    if deps.pacer is not None:
        await deps.pacer.wait(plan.route.phone_number)
    sent = await deps.whatsapp.send(
        plan.route,
        to_number=plan.to_number,
        body=plan.body,
        status_callback=status_callback(deps, plan.message_id),
        media_urls=[media.fetch_url(deps, hotel_id, item.id) for item in plan.media],
        content_sid=plan.content_sid,
        content_variables=plan.content_variables,
    )
    await deps.store.record_sent(hotel_id, plan.message_id, sent)
    log.info("send.sent", hotel_id=hotel_id, message_id=plan.message_id, status=sent.status.value)
    metrics.TWILIO_SENDS.labels("sent", "").inc()
    await notify.status_changed(deps, plan.conversation_id, plan.message_id, sent.status)
    return "sent"


async def _send_parts(deps: Deps, parts: MessageParts, hotel_id: int, plan: SendPlan) -> str:
    """Send the unsent parts of `plan`'s message in order, each once. A `SendError` leaves the
    part it happened on released (forgotten unless Twilio may have it) and propagates."""
    assert plan.route is not None
    assert plan.to_number is not None
    stored = await parts.prepare(hotel_id, plan.message_id, split_message(plan.body))
    first = stored[0].index if stored else 0
    outcome = "sent"
    for part in stored:
        if part.sid is not None:
            continue
        if part.attempted_at is not None:
            found = await deps.whatsapp.find_sent(
                plan.route, to_number=plan.to_number, body=part.body, since=part.attempted_at
            )
            if found is not None:
                await parts.record_sent(hotel_id, plan.message_id, part.index, found)
                log.info("send.part_reconciled", hotel_id=hotel_id,
                         message_id=plan.message_id, part=part.index)  # fmt: skip
                metrics.TWILIO_SENDS.labels("reconciled", "").inc()
                outcome = "reconciled"
                continue
        await parts.begin(
            hotel_id, plan.message_id, part.index, lease_seconds=deps.reply_lease_seconds
        )
        if deps.pacer is not None:
            await deps.pacer.wait(plan.route.phone_number)
        try:
            sent = await deps.whatsapp.send(
                plan.route,
                to_number=plan.to_number,
                body=part.body,
                status_callback=status_callback(deps, plan.message_id, part.index),
                # The message's files go with its first part, as that part's attachments.
                media_urls=[media.fetch_url(deps, hotel_id, item.id) for item in plan.media]
                if part.index == first
                else (),
            )
        except SendError as exc:
            if exc.retryable:
                await parts.release(
                    hotel_id, plan.message_id, part.index, maybe_sent=exc.maybe_sent
                )
            raise
        await parts.record_sent(hotel_id, plan.message_id, part.index, sent)
        log.info("send.part_sent", hotel_id=hotel_id, message_id=plan.message_id,
                 part=part.index, of=len(stored))  # fmt: skip
        metrics.TWILIO_SENDS.labels("sent", "").inc()
    status = await parts.finish(hotel_id, plan.message_id)
    ticks = await parts.statuses(hotel_id, [plan.message_id])
    await notify.status_changed(
        deps, plan.conversation_id, plan.message_id, status, parts=ticks.get(plan.message_id)
    )
    return f"{outcome} in {len(stored)} parts"
