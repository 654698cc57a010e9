"""What an agent does in the dashboard: read conversations, reply, write internal notes, take
over from the assistant, hand back, resolve and reopen.

Every call runs in the agent's current hotel: a conversation id of another hotel is `NotFound`,
and nothing about it leaks. Changes are committed first, then announced to the hotel's agents;
a reply is sent by the worker (`send_outbound`), like the assistant's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog

from hotelchat.domain.conversation import Action
from hotelchat.domain.errors import InvalidInput, NotFound, Unavailable
from hotelchat.domain.model import MAX_REPLY_BODY_CHARS, ConversationState
from hotelchat.observability import metrics
from hotelchat.services import media, notify
from hotelchat.services.ports import (
    AgentMessage,
    AgentSession,
    ConversationSummary,
    Deps,
    MessageView,
)

log = structlog.get_logger(__name__)

MAX_BODY_CHARS = 4096  # WhatsApp's limit on a text message: notes
MAX_REPLY_CHARS = MAX_REPLY_BODY_CHARS  # sent in parts of Twilio's 1,600 characters
MAX_PAGE = 100


def check_body(body: str, limit: int = MAX_BODY_CHARS) -> str:
    """`body` without surrounding whitespace; raises `InvalidInput` when empty or longer than
    `limit` characters."""
    text = body.strip().replace("\x00", "")
    if not text:
        raise InvalidInput("the message is empty")
    if len(text) > limit:
        raise InvalidInput(f"the message is longer than {limit} characters")
    return text


def check_client_id(client_id: str) -> str:
    """The canonical form of a browser-generated UUID; raises `InvalidInput`."""
    try:
        return str(uuid.UUID(client_id))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput("client_id must be a UUID") from None


async def conversations(
    deps: Deps, session: AgentSession, *, states: Sequence[ConversationState] | None, limit: int
) -> list[ConversationSummary]:
    """The hotel's conversations, most recent first."""
    return await deps.inbox.conversations(
        session.hotel_id, states=states, limit=max(1, min(limit, 500))
    )


async def conversation(
    deps: Deps, session: AgentSession, conversation_id: int
) -> ConversationSummary:
    """One conversation of the agent's hotel; raises `NotFound`."""
    found = await deps.inbox.conversation(session.hotel_id, conversation_id)
    if found is None:
        raise NotFound("no such conversation")
    return found


async def messages(
    deps: Deps,
    session: AgentSession,
    conversation_id: int,
    *,
    after: int | None,
    before: int | None,
    limit: int,
) -> list[MessageView]:
    """A page of the timeline, notes included (see `Inbox.messages`); raises `NotFound`."""
    await conversation(deps, session, conversation_id)
    return await deps.inbox.messages(
        session.hotel_id,
        conversation_id,
        after=after,
        before=before,
        limit=max(1, min(limit, MAX_PAGE)),
        include_internal=True,
    )


async def mark_read(deps: Deps, session: AgentSession, conversation_id: int, up_to: int) -> None:
    await conversation(deps, session, conversation_id)
    await deps.inbox.mark_read(session.hotel_id, conversation_id, up_to)
    await notify.conversation_touched(deps, session.hotel_id, conversation_id)


async def reply(
    deps: Deps,
    session: AgentSession,
    conversation_id: int,
    *,
    body: str,
    client_id: str,
    attachments: Sequence[str] = (),
) -> AgentMessage:
    """Send `body` to the guest as the agent, taking the conversation over, with the files
    that the upload tokens `attachments` name (`body` may then be empty).

    Stored once per `client_id` (a retried request returns the first). Raises `InvalidInput`,
    `NotFound`, `Forbidden` (another conversation's upload), or `Conflict` (another agent
    owns the conversation; WhatsApp's window closed).
    """
    files = media.redeem_uploads(deps, session.hotel_id, conversation_id, list(attachments))
    text = body.strip() if files and not body.strip() else check_body(body, MAX_REPLY_CHARS)
    stored = await deps.inbox.add_agent_message(
        session.hotel_id,
        conversation_id,
        session.agent_id,
        body=text,
        client_id=check_client_id(client_id),
        internal=False,
        attachments=files,
    )
    if not stored.created:
        return stored
    await deps.stop_signals.stop(conversation_id)
    if stored.waited_seconds is not None:
        metrics.HANDOFF_FIRST_REPLY.labels(session.hotel_slug).observe(stored.waited_seconds)
    try:
        await deps.jobs.enqueue_send(session.hotel_id, stored.message_id)
    except Unavailable:
        log.warning("reply.enqueue_failed", message_id=stored.message_id)  # the sweeper sends it
    await notify.message_added(
        deps, session.hotel_id, conversation_id, stored.message_id, guest_channel=None
    )
    log.info("agent.replied", conversation_id=conversation_id, message_id=stored.message_id)
    return stored


async def add_note(
    deps: Deps, session: AgentSession, conversation_id: int, *, body: str, client_id: str
) -> AgentMessage:
    """An internal note in the timeline: never sent to the guest, never shown to the model."""
    stored = await deps.inbox.add_agent_message(
        session.hotel_id,
        conversation_id,
        session.agent_id,
        body=check_body(body),
        client_id=check_client_id(client_id),
        internal=True,
    )
    if stored.created:
        await notify.message_added(
            deps, session.hotel_id, conversation_id, stored.message_id, guest_channel=None
        )
    return stored


async def change(
    deps: Deps, session: AgentSession, conversation_id: int, action: Action
) -> ConversationSummary:
    """Take over, hand back, resolve or reopen. Taking over stops a reply the assistant is
    generating. Raises `NotFound` or `Conflict`."""
    if action is Action.REPLY:
        raise InvalidInput("reply with a message")
    summary = await deps.inbox.change_ownership(
        session.hotel_id, conversation_id, session.agent_id, action
    )
    if summary.state is ConversationState.AI:
        await deps.stop_signals.clear(conversation_id)
    else:
        await deps.stop_signals.stop(conversation_id)
    await notify.conversation_changed(deps, summary)
    log.info("agent.changed", conversation_id=conversation_id, action=action.value)
    return summary
