"""Receive Twilio's delivery-status callbacks: queued -> sent -> delivered -> read (or
undelivered / failed), for messages we sent.

A status only ever moves forwards, so repeated and out-of-order callbacks change nothing. The
callback URL carries our message id (Twilio signs the whole URL), so a callback that arrives
before we stored the MessageSid still finds its message.

A `failed` callback with ErrorCode 63016 (outside the 24-hour window) closes the conversation's
window and tells staff to use a template.

Callback parameters: https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import structlog

from hotelchat.domain.addresses import parse_whatsapp_address
from hotelchat.domain.errors import Forbidden, InvalidInput
from hotelchat.domain.model import DeliveryStatus, provider_status
from hotelchat.observability import metrics
from hotelchat.services import notify, templates
from hotelchat.services.inbound import SIGNATURE_PATTERN, verified_route
from hotelchat.services.outbound import OUTSIDE_WINDOW
from hotelchat.services.ports import Deps, StatusUpdate

log = structlog.get_logger(__name__)

_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
_ERROR_CODE = re.compile(r"^[0-9]{1,6}$")


async def receive_status_callback(
    deps: Deps,
    params: Mapping[str, str],
    *,
    url: str,
    signature: str | None,
    message_id: int | None,
    part: int | None = None,
) -> StatusUpdate | None:
    """Apply one status callback. `message_id` is the id from the callback URL's query, if any;
    `part` the 0-based part of a message sent in parts (`services.outbound`), if any.

    Returns the change, or None when the status was not news (a repeat, an out-of-order
    callback, a status we do not track, or a message of ours that no longer exists).
    Raises `Forbidden` (bad signature), `InvalidInput` (malformed fields), `NotFound` (the
    `From` number is no hotel's).
    """
    if not signature or not SIGNATURE_PATTERN.fullmatch(signature):
        raise Forbidden("missing or malformed X-Twilio-Signature")
    from_number = parse_whatsapp_address(params.get("From", ""), field="From")
    route = await verified_route(deps, from_number, url, params, signature)
    if params.get("AccountSid") != route.account_sid:
        raise Forbidden("AccountSid is not this number's account")
    sid = params.get("MessageSid", "")
    if not _MESSAGE_SID.fullmatch(sid):
        raise InvalidInput("MessageSid is malformed")
    raw_status = params.get("MessageStatus", "")
    if len(raw_status) > 32:
        raise InvalidInput("MessageStatus is malformed")
    error_code = params.get("ErrorCode") or None
    if error_code is not None and not _ERROR_CODE.fullmatch(error_code):
        raise InvalidInput("ErrorCode is malformed")
    status = provider_status(raw_status)
    if status is None:
        return None
    parts = None
    if part is not None and message_id is not None:
        if deps.parts is None:
            return None
        update = await deps.parts.apply_status(
            route.hotel_id,
            message_id=message_id,
            index=part,
            sid=sid,
            status=status,
            error_code=f"twilio_{error_code}" if error_code else None,
        )
        if update is not None:
            ticks = await deps.parts.statuses(route.hotel_id, [message_id])
            parts = ticks.get(message_id)
    else:
        update = await deps.store.apply_delivery_status(
            route.hotel_id,
            message_id=message_id,
            sid=sid,
            status=status,
            error_code=f"twilio_{error_code}" if error_code else None,
        )
    if update is not None:
        log.info(
            "status.updated",
            hotel_id=route.hotel_id,
            message_id=update.message_id,
            status=update.status.value,
        )
        metrics.DELIVERY_STATUS.labels(update.status.value).inc()
        await notify.status_changed(
            deps, update.conversation_id, update.message_id, update.status, parts=parts
        )
        if update.handed_off:
            metrics.HANDOFFS.labels(route.hotel_slug, "delivery_failed").inc()
            await notify.conversation_touched(deps, route.hotel_id, update.conversation_id)
        if (
            update.status is DeliveryStatus.FAILED
            and error_code == str(OUTSIDE_WINDOW)
            and deps.templates is not None
        ):
            await templates.window_closed(deps, route.hotel_id, update.message_id)
    return update
