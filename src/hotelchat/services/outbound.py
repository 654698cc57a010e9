"""Hand one stored outbound message to the guest's channel, exactly once.

The job takes a lease on the message in PostgreSQL (renewed while the send is under way, see
`services.leases`), sends, and records the provider's MessageSid.
If an earlier attempt may have reached Twilio without us learning the outcome (the worker died,
or the request timed out), the message is looked up at Twilio before anything is sent again.
Retries are bounded by `Deps.max_attempts`; a message that cannot be sent ends `failed` and its
conversation goes to staff.
"""

from __future__ import annotations

import structlog

from hotelchat.domain.errors import SendError, TemporaryFailure
from hotelchat.domain.model import Channel, DeliveryStatus
from hotelchat.observability import metrics
from hotelchat.services import leases, notify
from hotelchat.services.ports import AlreadySent, Busy, Deps, Gone, SendPlan

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 10.0


def status_callback(deps: Deps, message_id: int) -> str | None:
    """The StatusCallback URL for one message: Twilio signs the whole URL, so the message id in
    it is as trustworthy as the rest of the callback, and it arrives even before we stored the
    MessageSid."""
    if deps.status_callback_url is None:
        return None
    return f"{deps.status_callback_url}?message_id={message_id}"


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
        handed_off = await deps.store.record_send_failure(
            hotel_id,
            message_id,
            error_code=code,
            handoff_reason=f"the message could not be delivered ({code})",
        )
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
    sent = await deps.whatsapp.send(
        plan.route,
        to_number=plan.to_number,
        body=plan.body,
        status_callback=status_callback(deps, plan.message_id),
    )
    await deps.store.record_sent(hotel_id, plan.message_id, sent)
    log.info("send.sent", hotel_id=hotel_id, message_id=plan.message_id, status=sent.status.value)
    metrics.TWILIO_SENDS.labels("sent", "").inc()
    await notify.status_changed(deps, plan.conversation_id, plan.message_id, sent.status)
    return "sent"
