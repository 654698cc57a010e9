"""The functions the model may call while answering a guest, and how each call is carried out.
https://platform.openai.com/docs/guides/function-calling

Scoping is ours, not the model's: every call acts on the conversation being answered and its
hotel, taken from the reply job, never from the arguments. `lookup_reservation` takes no
arguments at all (whatever the model passes is ignored), so no prompt injection can make it show
another guest's booking. Arguments are the model's JSON text and are validated like any other
input; a bad call gets an error result the model can read and recover from, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from hotelchat.domain.errors import InvalidInput
from hotelchat.domain.model import SERVICE_REQUEST_KINDS
from hotelchat.services import reservations, service_requests
from hotelchat.services.ports import Deps, Reservation, ToolCallRequest, ToolSpec, ToolUse

log = structlog.get_logger(__name__)

MAX_ARGUMENT_CHARS = 4000
MAX_REASON_CHARS = 300
MAX_DETAILS_CHARS = 1000

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="lookup_reservation",
        description="The current or coming reservation(s) of the guest in this conversation "
        "(matched by their verified phone number or web-chat link): dates, room type, "
        "guests, status, booking code. Takes no arguments and never shows anyone else's.",
        parameters={"type": "object", "properties": {}, "additionalProperties": False},
    ),
    ToolSpec(
        name="handoff_to_staff",
        description="Hand this conversation to the hotel's staff, who will answer the guest "
        "themselves. Use when the guest asks for a person, complains, or needs something "
        "you cannot do.",
        parameters={
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "description": "Why, in a few words, for the staff.",
                    "maxLength": MAX_REASON_CHARS,
                }
            },
            "required": ["reason"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        name="create_service_request",
        description="File a request for hotel staff to act on: housekeeping, late check-out, "
        "early check-in, a taxi, a repair, room service, amenities, or other.",
        parameters={
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": list(SERVICE_REQUEST_KINDS)},
                "details": {
                    "type": "string",
                    "description": "What exactly, when, and for which room if known.",
                    "maxLength": MAX_DETAILS_CHARS,
                },
            },
            "required": ["kind", "details"],
            "additionalProperties": False,
        },
    ),
)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call returns to the model (`content`, JSON), what staff see (`use`), and the
    handoff it asks for, if any."""

    content: str
    use: ToolUse
    handoff_reason: str | None = None


def _result(name: str, arguments: Mapping[str, object], outcome: str, **content: Any) -> ToolResult:
    return ToolResult(
        content=json.dumps(content, ensure_ascii=False, default=str),
        use=ToolUse(name=name, arguments=dict(arguments), outcome=outcome),
    )


def _error(name: str, arguments: Mapping[str, object], message: str) -> ToolResult:
    return _result(name, arguments, f"error: {message}", error=message)


def _arguments(call: ToolCallRequest) -> dict[str, object] | str:
    """The call's arguments as an object, or why they are unusable."""
    if len(call.arguments) > MAX_ARGUMENT_CHARS:
        return f"arguments longer than {MAX_ARGUMENT_CHARS} characters"
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return "arguments are not valid JSON"
    if not isinstance(value, dict):
        return "arguments must be a JSON object"
    return value


def _reservation(r: Reservation) -> dict[str, object]:
    """What the model may see of a reservation: no notes, phone number or e-mail."""
    return {
        "code": r.code,
        "guest_name": r.guest_name,
        "check_in": r.check_in.isoformat(),
        "check_out": r.check_out.isoformat(),
        "room_type": r.room_type,
        "adults": r.adults,
        "children": r.children,
        "status": r.status,
    }


async def run_tool(
    deps: Deps, hotel_id: int, conversation_id: int, message_id: int, call: ToolCallRequest
) -> ToolResult:
    """Carry out one call of the model in conversation `conversation_id` of hotel `hotel_id`,
    answering inbound message `message_id`. Never raises for a bad call (the model reads the
    error); `Unavailable` (PostgreSQL down) propagates."""
    arguments = _arguments(call)
    if isinstance(arguments, str):
        return _error(call.name, {}, arguments)
    match call.name:
        case "lookup_reservation":
            found = await reservations.guest_reservations(deps, hotel_id, conversation_id)
            if not found:
                return _result(
                    call.name,
                    arguments,
                    "no reservation found",
                    reservations=[],
                    note="No reservation is linked to this guest's phone number or web chat. "
                    "Staff can find it by name or booking code.",
                )
            return _result(
                call.name,
                arguments,
                f"found {len(found)} reservation(s): " + ", ".join(r.code for r in found),
                reservations=[_reservation(r) for r in found],
            )
        case "handoff_to_staff":
            reason = arguments.get("reason")
            text = (reason if isinstance(reason, str) else "").strip()[:MAX_REASON_CHARS]
            result = _result(call.name, arguments, "handed to staff", status="handed to staff")
            return ToolResult(
                result.content, result.use, handoff_reason=text or "the assistant asked for staff"
            )
        case "create_service_request":
            kind, details = arguments.get("kind"), arguments.get("details")
            if not isinstance(kind, str) or not isinstance(details, str):
                return _error(call.name, arguments, "kind and details are required strings")
            try:
                request = await service_requests.open_request(
                    deps,
                    hotel_id,
                    conversation_id,
                    kind=kind,
                    details=details.strip()[:MAX_DETAILS_CHARS],
                    message_id=message_id,
                )
            except InvalidInput as exc:
                return _error(call.name, arguments, exc.message)
            return _result(
                call.name,
                arguments,
                f"request #{request.id} ({request.kind}) open",
                request_id=request.id,
                kind=request.kind,
                status=request.status,
            )
        case _:
            log.warning("assistant.unknown_tool", tool=call.name[:100])
            return _error(call.name[:100], arguments, f"there is no tool named {call.name[:100]!r}")
