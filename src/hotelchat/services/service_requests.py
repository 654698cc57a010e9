"""Service requests: what a guest asked staff to do (housekeeping, a late check-out, a taxi…).

The assistant files them (its `create_service_request` tool calls `open_request`, once per guest
message and kind however often the reply job runs); any agent of the hotel sees them in the
dashboard and closes them as done or cancelled. Every change is announced to the hotel's agents
with the `service_request` event (the whole row), after it is committed.
"""

from __future__ import annotations

from typing import Literal

import structlog

from hotelchat.domain.errors import InvalidInput
from hotelchat.domain.model import SERVICE_REQUEST_KINDS
from hotelchat.services import notify
from hotelchat.services.ports import AgentSession, Deps, ServiceRequest

log = structlog.get_logger(__name__)

MAX_DETAILS = 1000  # characters, as the table's check
MAX_LIST = 200
STATUSES: tuple[Literal["open", "done", "cancelled"], ...] = ("open", "done", "cancelled")
CLOSED_STATUSES: tuple[Literal["done", "cancelled"], ...] = ("done", "cancelled")


def check_request(kind: str, details: str) -> tuple[str, str]:
    """The kind and the trimmed details; raises `InvalidInput` naming the bad one."""
    if kind not in SERVICE_REQUEST_KINDS:
        raise InvalidInput(f"kind: one of {', '.join(SERVICE_REQUEST_KINDS)}")
    details = details.strip()
    if not 1 <= len(details) <= MAX_DETAILS:
        raise InvalidInput(f"details: 1 to {MAX_DETAILS} characters")
    return kind, details


async def open_request(
    deps: Deps,
    hotel_id: int,
    conversation_id: int,
    *,
    kind: str,
    details: str,
    message_id: int,
) -> ServiceRequest:
    """File a request of `kind` (one of `SERVICE_REQUEST_KINDS`) with `details` (1 to 1000
    characters once trimmed) for inbound message `message_id` of conversation
    `conversation_id`, and tell the hotel's agents when it is new. Filing again for the same
    message and kind returns the request filed the first time and tells no one.

    Raises `InvalidInput` (bad kind or details), `NotFound` (no such conversation in the hotel)
    or `Unavailable` (PostgreSQL)."""
    kind, details = check_request(kind, details)
    request, created = await deps.service_requests.create(
        hotel_id, conversation_id, kind=kind, details=details, message_id=message_id
    )
    if created:
        log.info(
            "service_request.opened", hotel_id=hotel_id, request_id=request.id, kind=request.kind
        )
        await notify.service_request_changed(deps, hotel_id, request)
    return request


def parse_status(value: str | None) -> Literal["open", "done", "cancelled"] | None:
    """A list filter from a query parameter: `open` (also when absent), `done`, `cancelled`,
    or `all` (None). Raises `InvalidInput` for anything else."""
    if value is None or value == "":
        return "open"
    if value == "all":
        return None
    for status in STATUSES:
        if value == status:
            return status
    raise InvalidInput("status: open, done, cancelled or all")


async def list_requests(
    deps: Deps,
    session: AgentSession,
    *,
    status: Literal["open", "done", "cancelled"] | None,
    limit: int = 100,
) -> list[ServiceRequest]:
    """The agent's current hotel's requests of `status` (None: all), newest first, at most
    `limit` (1 to 200). Raises `InvalidInput` for a limit out of range."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit: 1 to {MAX_LIST}")
    return await deps.service_requests.list(session.hotel_id, status=status, limit=limit)


async def close_request(
    deps: Deps, session: AgentSession, request_id: int, status: str
) -> ServiceRequest:
    """Close an open request of the agent's current hotel as `done` or `cancelled` (any agent
    of the hotel may), and tell the hotel's agents.

    Raises `InvalidInput` (another status), `NotFound` (no such request in this hotel, including
    another hotel's), `Conflict` (closed already) or `Unavailable`."""
    chosen = next((s for s in CLOSED_STATUSES if s == status), None)
    if chosen is None:
        raise InvalidInput("status: done or cancelled")
    request = await deps.service_requests.close(
        session.hotel_id, request_id, session.agent_id, chosen
    )
    log.info(
        "service_request.closed",
        hotel_id=session.hotel_id,
        request_id=request.id,
        status=chosen,
        agent_id=session.agent_id,
    )
    await notify.service_request_changed(deps, session.hotel_id, request)
    return request
