"""Twilio's webhooks: inbound WhatsApp messages and delivery-status callbacks.

The handler verifies and parses; everything else is one call into a service. It answers Twilio in
milliseconds: storing the message is the only work before the response, the reply is a job. Past
WEBHOOK_MAX_IN_FLIGHT webhooks at once, a process sheds more with 503 and Retry-After.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request

from hotelchat.domain.errors import InvalidInput, Overloaded, PayloadTooLarge
from hotelchat.entrypoints.web.context import container
from hotelchat.observability import metrics
from hotelchat.services import delivery, inbound

blueprint = Blueprint("webhooks", __name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
FORM = "application/x-www-form-urlencoded"
SLOTS = "hotelchat.webhook_slots"
INBOUND_PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = "/webhooks/twilio/status"
RETRY_AFTER_SECONDS = 5
_SHED_BODY = json.dumps(
    {"error": {"code": Overloaded.code, "message": "too many webhooks at once; try again"}}
).encode()


class InFlightLimit:
    """At most `limit` webhooks handled at once in this process (single event loop: a plain
    counter suffices)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0


class ShedWebhooks:
    """ASGI middleware in front of everything: a Twilio webhook that finds WEBHOOK_MAX_IN_FLIGHT
    of them already being handled gets 503 with Retry-After at once, before Quart parses,
    routes or reads it, so overload is shed cheaply instead of growing a queue of requests
    that time out. Nothing of a shed webhook is stored."""

    def __init__(self, app: Any, limit: InFlightLimit) -> None:
        self._app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in (INBOUND_PATH, STATUS_PATH):
            await self._app(scope, receive, send)
            return
        if self.limit.in_flight >= self.limit.limit:
            metrics.HTTP_REQUESTS.labels(scope["path"], scope["method"], "503").inc()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"content-length", str(len(_SHED_BODY)).encode()),
            ]})  # fmt: skip
            await send({"type": "http.response.body", "body": _SHED_BODY})
            return
        self.limit.in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.limit.in_flight -= 1


async def _form_params() -> dict[str, str]:
    """The posted form as a plain dict; raises `PayloadTooLarge` or `InvalidInput`."""
    limit = container().settings.webhook_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    if request.mimetype != FORM:
        raise InvalidInput(f"expected {FORM}")
    form = await request.form
    params: dict[str, str] = {}
    for key in form:
        values = form.getlist(key)
        if len(values) != 1:
            raise InvalidInput(f"parameter {key} appears more than once")
        params[key] = values[0]
    return params


def _signed_url() -> str:
    """The URL Twilio signed: our configured public URL, never the request's Host or
    X-Forwarded-* headers (which anyone can set)."""
    url = container().settings.public_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("utf-8", "replace")
    return url


@blueprint.post(INBOUND_PATH)
async def whatsapp_inbound() -> Response:
    """An inbound WhatsApp message. 200 with empty TwiML once stored (or already stored); 503
    with Retry-After, storing nothing, when the process is at WEBHOOK_MAX_IN_FLIGHT (answered
    by `ShedWebhooks` before this runs)."""
    with metrics.WEBHOOK_INGEST.labels("inbound").time():
        params = await _form_params()
        await inbound.receive_whatsapp(
            container().deps,
            params,
            url=_signed_url(),
            signature=request.headers.get("X-Twilio-Signature"),
        )
    return Response(EMPTY_TWIML, status=200, content_type="text/xml; charset=utf-8")


@blueprint.post(STATUS_PATH)
async def whatsapp_status() -> Response:
    """A delivery-status callback for a message we sent. 204 whether or not it was news; 503
    when the process is at WEBHOOK_MAX_IN_FLIGHT (shared with inbound messages)."""
    with metrics.WEBHOOK_INGEST.labels("status").time():
        return await _status()


async def _status() -> Response:
    params = await _form_params()
    raw_id = request.args.get("message_id")
    if raw_id is not None and not (raw_id.isdigit() and len(raw_id) <= 18):
        raise InvalidInput("message_id is malformed")
    raw_part = request.args.get("part")
    if raw_part is not None and not (
        raw_id is not None and raw_part.isdigit() and len(raw_part) <= 2
    ):
        raise InvalidInput("part is malformed")
    await delivery.receive_status_callback(
        container().deps,
        params,
        url=_signed_url(),
        signature=request.headers.get("X-Twilio-Signature"),
        message_id=int(raw_id) if raw_id is not None else None,
        part=int(raw_part) if raw_part is not None else None,
    )
    return Response("", status=204)
