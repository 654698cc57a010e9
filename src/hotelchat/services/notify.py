"""The realtime events services send after a change is committed, and their payloads.

Events carry ids and small payloads; clients fetch what they need by id and catch up by their
last-seen message id after a reconnect, so a lost event costs nothing but a moment's delay.

Agent namespace (`/agent`):
- `conversation` to the hotel's room: a list row (state, unread count, preview of ≤120 chars).
- `message` to the conversation's room: `{conversation_id, id}` of a new timeline entry.
- `status` to the conversation's room: `{conversation_id, id, status}`, a delivery tick.
- `media` to the conversation's room: `{conversation_id, id}`: a message's media changed state
  (stored, refused, failed); the client fetches the message again.
- `ai_delta` / `ai_done` / `ai_aborted` to the conversation's room: a reply being generated.
- `service_request` to the hotel's room: a service request opened or closed (the whole row).
- `budget` to the hotel's room: the month's AI spend crossed 80 % or 100 % of the budget, or the
  settings changed (`{spent_usd, budget_usd, used}`).
Guest namespace (`/guest`), to the guest's room: `message {id}`, `ai_delta`, `ai_done`,
`ai_aborted`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hotelchat.domain.conversation import (
    AGENT_NAMESPACE,
    GUEST_NAMESPACE,
    conversation_room,
    guest_room,
    hotel_room,
)
from hotelchat.domain.model import Channel, DeliveryStatus
from hotelchat.services.ports import ConversationSummary, Deps, ServiceRequest, Spend


def summary_payload(summary: ConversationSummary) -> dict[str, object]:
    """A conversation list row as JSON-ready data."""
    return {
        "id": summary.id,
        "channel": summary.channel.value,
        "state": summary.state.value,
        "assigned_agent_id": summary.assigned_agent_id,
        "assigned_agent_name": summary.assigned_agent_name,
        "guest_name": summary.guest_name,
        "guest_phone": summary.guest_phone,
        "guest_language": summary.guest_language,
        "last_message_at": summary.last_message_at.isoformat(),
        "last_inbound_at": summary.last_inbound_at.isoformat() if summary.last_inbound_at else None,
        "preview": summary.preview,
        "preview_author": summary.preview_author.value if summary.preview_author else None,
        "unread": summary.unread,
        "handoff_reason": summary.handoff_reason,
        "awaiting_human_since": (
            summary.awaiting_human_since.isoformat() if summary.awaiting_human_since else None
        ),
        "opted_out_at": summary.opted_out_at.isoformat() if summary.opted_out_at else None,
    }


async def conversation_changed(deps: Deps, summary: ConversationSummary) -> None:
    """Tell the hotel's agents that a list row changed."""
    await deps.events.emit(
        "conversation",
        summary_payload(summary),
        room=hotel_room(summary.hotel_id),
        namespace=AGENT_NAMESPACE,
    )


async def conversation_touched(deps: Deps, hotel_id: int, conversation_id: int) -> None:
    """Re-read a conversation's list row and send it (after a change made elsewhere)."""
    summary = await deps.inbox.conversation(hotel_id, conversation_id)
    if summary is not None:
        await conversation_changed(deps, summary)


async def message_added(
    deps: Deps,
    hotel_id: int,
    conversation_id: int,
    message_id: int,
    *,
    guest_channel: Channel | None,
) -> None:
    """Tell the conversation's watchers about a new timeline entry, and the web-chat guest too
    when `guest_channel` is WEB (never for internal notes: pass None)."""
    await deps.events.emit(
        "message",
        {"conversation_id": conversation_id, "id": message_id},
        room=conversation_room(conversation_id),
        namespace=AGENT_NAMESPACE,
    )
    if guest_channel is Channel.WEB:
        await deps.events.emit(
            "message",
            {"id": message_id},
            room=guest_room(conversation_id),
            namespace=GUEST_NAMESPACE,
        )
    await conversation_touched(deps, hotel_id, conversation_id)


async def media_changed(deps: Deps, conversation_id: int, message_id: int) -> None:
    """A message's media moved on (stored, refused, failed)."""
    await deps.events.emit(
        "media",
        {"conversation_id": conversation_id, "id": message_id},
        room=conversation_room(conversation_id),
        namespace=AGENT_NAMESPACE,
    )


async def status_changed(
    deps: Deps,
    conversation_id: int,
    message_id: int,
    status: DeliveryStatus,
    *,
    parts: Sequence[DeliveryStatus] | None = None,
) -> None:
    """A delivery tick for the conversation's watchers; `parts` are the ticks of each part of a
    message sent in parts, in order."""
    payload: dict[str, object] = {
        "conversation_id": conversation_id,
        "id": message_id,
        "status": status.value,
    }
    if parts is not None:
        payload["parts"] = [p.value for p in parts]
    await deps.events.emit(
        "status",
        payload,
        room=conversation_room(conversation_id),
        namespace=AGENT_NAMESPACE,
    )


async def ai_event(
    deps: Deps,
    event: str,
    conversation_id: int,
    reply_to: int,
    *,
    channel: Channel,
    text: str | None = None,
    seq: int | None = None,
) -> None:
    """`ai_delta` (a chunk of `text`, numbered `seq`), `ai_done` or `ai_aborted` for a reply
    being generated, to agents watching and to a web-chat guest."""
    payload: dict[str, object] = {"conversation_id": conversation_id, "reply_to": reply_to}
    if text is not None:
        payload |= {"text": text, "seq": seq}
    await deps.events.emit(
        event, payload, room=conversation_room(conversation_id), namespace=AGENT_NAMESPACE
    )
    if channel is Channel.WEB:
        guest_payload = {k: v for k, v in payload.items() if k != "conversation_id"}
        await deps.events.emit(
            event, guest_payload, room=guest_room(conversation_id), namespace=GUEST_NAMESPACE
        )


def service_request_payload(request: ServiceRequest) -> dict[str, object]:
    """A service request as JSON-ready data."""
    return {
        "id": request.id,
        "conversation_id": request.conversation_id,
        "kind": request.kind,
        "details": request.details,
        "status": request.status,
        "created_at": request.created_at.isoformat(),
        "closed_at": request.closed_at.isoformat() if request.closed_at else None,
        "closed_by_name": request.closed_by_name,
        "guest_name": request.guest_name,
    }


async def service_request_changed(deps: Deps, hotel_id: int, request: ServiceRequest) -> None:
    """Tell the hotel's agents a service request was opened or closed."""
    await deps.events.emit(
        "service_request",
        service_request_payload(request),
        room=hotel_room(hotel_id),
        namespace=AGENT_NAMESPACE,
    )


def spend_payload(spend: Spend) -> dict[str, object]:
    """A hotel's month of AI spend as JSON-ready data (US dollars; `used` 1.0 = all)."""
    return {
        "spent_usd": round(spend.spent_usd, 4),
        "budget_usd": spend.budget_usd,
        "used": round(spend.used, 4) if spend.used is not None else None,
    }


async def budget_changed(deps: Deps, hotel_id: int, spend: Spend) -> None:
    """Tell the hotel's agents where the AI budget stands: when a reply's cost crossed a warning
    line (80 %, 100 %), and when a manager changed the assistant's settings."""
    await deps.events.emit(
        "budget", spend_payload(spend), room=hotel_room(hotel_id), namespace=AGENT_NAMESPACE
    )
