"""Receive an inbound WhatsApp message: route it to its hotel, check Twilio's signature, store it,
commit, then queue the reply.

The caller (the webhook handler) answers Twilio as soon as this returns; the model is never waited
on here. A replayed MessageSid stores and queues nothing new. If the queue is down the message is
still stored, and the sweeper (`services.maintenance`) queues its reply once the queue is back.

Webhook parameters: https://www.twilio.com/docs/messaging/guides/webhook-request and, for
WhatsApp, https://www.twilio.com/docs/whatsapp/api#incoming-message-webhook-parameters
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotelchat.domain.addresses import parse_whatsapp_address
from hotelchat.domain.errors import Forbidden, InvalidInput, NotFound, Unavailable
from hotelchat.domain.media import (
    TWILIO_MEDIA_HOST,
    DeclaredMedia,
    check_media,
    check_twilio_media_url,
    normal_type,
)
from hotelchat.domain.model import Channel, InboundWhatsApp, SenderRoute
from hotelchat.observability import metrics
from hotelchat.services import media, notify
from hotelchat.services.ports import Deps, InboundRecord

log = structlog.get_logger(__name__)

# WhatsApp's own limit on a text message: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages#text-object
MAX_BODY_CHARS = 4096
MAX_PARAMS = 200
MAX_PARAM_CHARS = 4096


class TwilioInboundParams(BaseModel):
    """The webhook fields HotelChat uses; any other parameter Twilio sends is accepted as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-f]{32}$")
    AccountSid: str = Field(pattern=r"^AC[0-9a-f]{32}$")
    From: str = Field(max_length=40)
    To: str = Field(max_length=40)
    Body: str = Field(default="", max_length=MAX_BODY_CHARS)
    NumMedia: int = Field(default=0, ge=0, le=10)
    WaId: str = Field(pattern=r"^[0-9]{6,15}$")
    ProfileName: str | None = Field(default=None, max_length=256)


def mask_number(number: str) -> str:
    """`+15551234567` -> `+15•••••••67`: enough for an operator to recognise one of their own
    numbers, not enough to identify anyone."""
    if len(number) < 6:
        return "•••"
    return number[:3] + "•" * (len(number) - 5) + number[-2:]


def parse_inbound(
    params: Mapping[str, str], *, media_base_url: str = TWILIO_MEDIA_HOST
) -> InboundWhatsApp:
    """Validate Twilio's webhook parameters into an `InboundWhatsApp`.

    `MediaUrl{N}` / `MediaContentType{N}` (N < NumMedia) must all be present; a URL that is not
    Twilio's media resource of this message on `media_base_url`, or a type WhatsApp does not
    allow, is kept with its refusal (the message is stored, the file never fetched).

    Raises `InvalidInput` naming the first bad field.
    """
    if len(params) > MAX_PARAMS:
        raise InvalidInput("too many parameters")
    for key, value in params.items():
        if len(value) > MAX_PARAM_CHARS and key != "Body":
            raise InvalidInput(f"{key} is too long")
    try:
        parsed = TwilioInboundParams.model_validate(dict(params))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "request"
        raise InvalidInput(f"{field}: {first['msg']}") from None
    from_number = parse_whatsapp_address(parsed.From, field="From")
    to_number = parse_whatsapp_address(parsed.To, field="To")
    body = parsed.Body.replace("\x00", "")
    if not body.strip() and parsed.NumMedia == 0:
        raise InvalidInput("Body is empty and there is no media")
    media = _declared_media(params, parsed, media_base_url)
    known = set(TwilioInboundParams.model_fields) | {
        f"{name}{n}" for n in range(parsed.NumMedia) for name in ("MediaUrl", "MediaContentType")
    }
    extra = {k: v for k, v in params.items() if k not in known}
    return InboundWhatsApp(
        message_sid=parsed.MessageSid,
        account_sid=parsed.AccountSid,
        from_number=from_number,
        to_number=to_number,
        body=body,
        wa_id=parsed.WaId,
        profile_name=(parsed.ProfileName or "").strip() or None,
        num_media=parsed.NumMedia,
        extra=extra,
        media=media,
    )


def _declared_media(
    params: Mapping[str, str], parsed: TwilioInboundParams, base_url: str
) -> tuple[DeclaredMedia, ...]:
    found = []
    for n in range(parsed.NumMedia):
        url = params.get(f"MediaUrl{n}")
        content_type = normal_type(params.get(f"MediaContentType{n}", ""))
        if not url:
            raise InvalidInput(f"MediaUrl{n}: missing (NumMedia is {parsed.NumMedia})")
        if not content_type or len(content_type) > 255:
            raise InvalidInput(f"MediaContentType{n}: missing or malformed")
        media_sid, refusal = check_twilio_media_url(
            url, base_url=base_url, account_sid=parsed.AccountSid, message_sid=parsed.MessageSid
        )
        refusal = refusal or check_media(content_type, None)
        found.append(DeclaredMedia(n, url[:1000], content_type, media_sid, refusal))
    return tuple(found)


# Base64 of an HMAC-SHA1 (28 characters) or -SHA256 (44).
SIGNATURE_PATTERN = re.compile(r"^[A-Za-z0-9+/=]{20,100}$")


async def verified_route(
    deps: Deps, number: str, url: str, params: Mapping[str, str], signature: str
) -> SenderRoute:
    """The route of our WhatsApp number `number`, once the request's signature is checked with
    its auth token. A mismatch against a remembered route is checked again against the current
    one, so a rotated token takes effect at once.

    Raises `NotFound` (no hotel uses the number) or `Forbidden` (the signature does not match).
    """
    route = await deps.store.route_whatsapp_sender(number)
    if route is None:
        log.warning("webhook.unknown_number", number=mask_number(number))
        raise NotFound("no hotel uses this WhatsApp number")
    if deps.signatures.is_valid(route.auth_token, url, params, signature):
        return route
    current = await deps.store.route_whatsapp_sender(number, fresh=True)
    if (
        current is not None
        and current.auth_token != route.auth_token
        and deps.signatures.is_valid(current.auth_token, url, params, signature)
    ):
        return current
    log.warning("webhook.bad_signature", hotel_id=route.hotel_id)
    raise Forbidden("X-Twilio-Signature does not match")


async def receive_whatsapp(
    deps: Deps, params: Mapping[str, str], *, url: str, signature: str | None
) -> InboundRecord:
    """Handle one inbound-message webhook.

    `params` are the form parameters exactly as posted, `url` the public URL Twilio posted to
    (from configuration, never from request headers), `signature` the X-Twilio-Signature header.

    Raises `Forbidden` (missing or bad signature, or an Account SID that is not the number's),
    `InvalidInput` (malformed fields), `NotFound` (no hotel uses the `To` number) and
    `Unavailable` (PostgreSQL down: Twilio will retry). Returns what was stored.
    """
    if not signature or not SIGNATURE_PATTERN.fullmatch(signature):
        raise Forbidden("missing or malformed X-Twilio-Signature")
    to_number = parse_whatsapp_address(params.get("To", ""), field="To")
    route = await verified_route(deps, to_number, url, params, signature)
    inbound = parse_inbound(params, media_base_url=deps.media_base_url)
    if inbound.account_sid != route.account_sid:
        log.warning("webhook.account_mismatch", hotel_id=route.hotel_id)
        raise Forbidden("AccountSid is not this number's account")
    language = deps.languages.detect(inbound.body) if inbound.body else None
    record = await deps.store.record_inbound_whatsapp(route, inbound, language)
    log.info(
        "inbound.stored" if not record.duplicate else "inbound.duplicate",
        hotel_id=route.hotel_id,
        message_id=record.message_id,
        conversation_id=record.conversation_id,
    )
    if not record.duplicate and record.message_id is not None and inbound.media:
        await media.enqueue_download(deps, route.hotel_id, record.message_id)
    if record.awaiting_reply and record.message_id is not None:
        try:
            await deps.jobs.enqueue_reply(route.hotel_id, record.message_id)
        except Unavailable:
            # Stored and committed: the sweeper queues it when Redis is back. Twilio gets 200.
            log.warning(
                "inbound.enqueue_failed", hotel_id=route.hotel_id, message_id=record.message_id
            )
    if not record.duplicate and record.message_id is not None and record.conversation_id:
        metrics.INBOUND_MESSAGES.labels(route.hotel_slug, Channel.WHATSAPP.value).inc()
        await notify.message_added(
            deps, route.hotel_id, record.conversation_id, record.message_id, guest_channel=None
        )
    return record
