"""The dashboard's service-request API: every agent of the hotel lists its requests and closes
them as done or cancelled. Another hotel's request id answers 404 exactly like one that does
not exist; closing needs the session's CSRF token in `X-CSRF-Token`. Changes reach every open
dashboard of the hotel as the `service_request` event."""

from __future__ import annotations

from typing import Literal

from quart import Blueprint, Response, jsonify, request

from hotelchat.domain.errors import InvalidInput, NotFound
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.dashboard import MAX_ID, _Body, parse
from hotelchat.entrypoints.web.security import checked_session, current_session
from hotelchat.services import service_requests
from hotelchat.services.notify import service_request_payload

blueprint = Blueprint("service_requests", __name__)


class CloseIn(_Body):
    status: Literal["done", "cancelled"]


def checked_request_id(value: int) -> int:
    if not 0 < value < MAX_ID:
        raise NotFound("no such service request")
    return value


def query_limit() -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return 100
    if not raw.isdigit() or len(raw) > 4:
        raise InvalidInput(f"limit: 1 to {service_requests.MAX_LIST}")
    return int(raw)


@blueprint.get("/api/service-requests")
async def list_requests() -> Response:
    """`?status=open` (the default), `done`, `cancelled` or `all`; `?limit=` 1 to 200 (100)."""
    session = await current_session()
    found = await service_requests.list_requests(
        container().deps,
        session,
        status=service_requests.parse_status(request.args.get("status")),
        limit=query_limit(),
    )
    return jsonify({"requests": [service_request_payload(r) for r in found]})


@blueprint.post("/api/service-requests/<int:request_id>/close")
async def close_request(request_id: int) -> Response:
    """`{"status": "done" | "cancelled"}`: the closed request; 409 when it was closed already."""
    session = await checked_session()
    body = await parse(CloseIn)
    closed = await service_requests.close_request(
        container().deps, session, checked_request_id(request_id), body.status
    )
    return jsonify(service_request_payload(closed))
