"""Who may do what to a conversation, and the Socket.IO rooms events go to. Pure rules.

One agent owns a conversation at a time. Taking over stops the assistant at once; handing back
gives the conversation to the assistant again; resolving closes it (a new guest message reopens
it for the assistant); reopening gives it to the agent who reopens it. Replying takes over
implicitly, unless another agent owns the conversation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hotelchat.domain.errors import Conflict
from hotelchat.domain.model import ConversationState

State = ConversationState


class Action(enum.StrEnum):
    TAKE_OVER = "takeover"
    HAND_BACK = "handback"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    REPLY = "reply"


@dataclass(frozen=True, slots=True)
class Ownership:
    state: ConversationState
    agent_id: int | None  # the owning agent, when state is AGENT


def apply(current: Ownership, action: Action, actor: int) -> Ownership:
    """The ownership after agent `actor` does `action`. Raises `Conflict` when another agent owns
    the conversation or the action makes no sense in its state."""
    owned_by_other = current.state is State.AGENT and current.agent_id not in (None, actor)
    if action is Action.TAKE_OVER or action is Action.REPLY:
        if owned_by_other:
            raise Conflict("another agent owns this conversation", code="owned_by_other_agent")
        return Ownership(State.AGENT, actor)
    if action is Action.HAND_BACK:
        if owned_by_other:
            raise Conflict("another agent owns this conversation", code="owned_by_other_agent")
        if current.state is State.RESOLVED:
            raise Conflict("the conversation is resolved; reopen it first", code="resolved")
        return Ownership(State.AI, None)
    if action is Action.RESOLVE:
        if owned_by_other:
            raise Conflict("another agent owns this conversation", code="owned_by_other_agent")
        return Ownership(State.RESOLVED, None)
    if current.state is not State.RESOLVED:
        raise Conflict("only a resolved conversation can be reopened", code="not_resolved")
    return Ownership(State.AGENT, actor)


# --- Rooms: named by the server from an identity it checked, never by a client. ----------------

AGENT_NAMESPACE = "/agent"
GUEST_NAMESPACE = "/guest"


def hotel_room(hotel_id: int) -> str:
    """Every agent connected to hotel `hotel_id`'s dashboard."""
    return f"hotel:{hotel_id}"


def conversation_room(conversation_id: int) -> str:
    """Agents watching one conversation."""
    return f"conversation:{conversation_id}"


def guest_room(conversation_id: int) -> str:
    """The web-chat guest of one conversation (all their tabs)."""
    return f"guest:{conversation_id}"
