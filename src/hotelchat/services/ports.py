"""The ports services depend on: small Protocols, and the data that crosses them.

`bootstrap.py` wires the real adapters (PostgreSQL, arq, OpenAI, Twilio, Socket.IO) into `Deps`;
tests wire the same adapters against real PostgreSQL and Redis and loopback emulators.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from hotelchat.domain.conversation import Action
from hotelchat.domain.model import (
    Author,
    Channel,
    ConversationState,
    DeliveryStatus,
    HotelProfile,
    InboundWhatsApp,
    Passage,
    Responder,
    SenderRoute,
    Turn,
)

# --- Store results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """What storing an inbound message did. `duplicate` is True for a replayed MessageSid, in
    which case nothing was written; `awaiting_reply` says whether a reply job is still owed."""

    message_id: int | None
    conversation_id: int | None
    duplicate: bool
    awaiting_reply: bool


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """Everything the assistant needs to answer one inbound message."""

    hotel: HotelProfile
    conversation_id: int
    channel: Channel
    question: str
    question_language: str | None
    guest_language: str | None
    history: Sequence[Turn]  # oldest first, ending before the question


@dataclass(frozen=True, slots=True)
class ReplyClaimed:
    context: ReplyContext


@dataclass(frozen=True, slots=True)
class ReplyAlreadyStored:
    """The reply exists; `needs_send` is True when it has not reached the provider yet."""

    reply_id: int
    needs_send: bool


@dataclass(frozen=True, slots=True)
class ReplySkipped:
    """Not the assistant's turn. `handoff` names why, when the skip handed the conversation to
    staff (a bounded label: `assistant_off`, `gave_up`)."""

    reason: str
    handoff: str | None = None


@dataclass(frozen=True, slots=True)
class Busy:
    """Another job holds the lease; try again in `retry_in` seconds."""

    retry_in: float


@dataclass(frozen=True, slots=True)
class Gone:
    """No such message in this hotel (deleted, or never there)."""


ReplyClaim = ReplyClaimed | ReplyAlreadyStored | ReplySkipped | Busy | Gone


@dataclass(frozen=True, slots=True)
class DraftReply:
    """A reply ready to store. `handoff_reason` set means: hand the conversation to staff."""

    body: str
    author: Literal[Author.AI, Author.SYSTEM]
    responder: Responder
    language: str | None
    handoff_reason: str | None = None
    handoff_kind: str | None = None  # bounded label for metrics: model_error, no_answer, media
    sources: tuple[Passage, ...] = ()  # the knowledge-base passages the reply was grounded in
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ReplyStored:
    reply_id: int


ReplyStoreResult = ReplyStored | ReplySkipped | Gone


@dataclass(frozen=True, slots=True)
class SendPlan:
    """An outbound message this job now owns the sending of.

    `reconcile_since` is set when an earlier attempt may have reached the provider (it died, or
    timed out, after handing the message over): look for that message before sending again.
    """

    message_id: int
    conversation_id: int
    channel: Channel
    body: str
    to_number: str | None  # E.164, WhatsApp only
    route: SenderRoute | None  # WhatsApp only
    reconcile_since: datetime | None


@dataclass(frozen=True, slots=True)
class AlreadySent:
    status: DeliveryStatus


SendClaim = SendPlan | AlreadySent | Busy | Gone


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery status that moved a message forwards."""

    message_id: int
    conversation_id: int
    status: DeliveryStatus
    handed_off: bool = False


@dataclass(frozen=True, slots=True)
class StalledWork:
    kind: Literal["reply", "send"]
    hotel_id: int
    message_id: int


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The provider's record of a message it accepted."""

    sid: str
    status: DeliveryStatus


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One row of an agent's conversation list."""

    id: int
    hotel_id: int
    channel: Channel
    state: ConversationState
    assigned_agent_id: int | None
    assigned_agent_name: str | None
    guest_name: str | None
    guest_phone: str | None
    guest_language: str | None
    last_message_at: datetime
    last_inbound_at: datetime | None
    preview: str
    preview_author: Author | None
    unread: int
    handoff_reason: str | None
    awaiting_human_since: datetime | None


@dataclass(frozen=True, slots=True)
class MessageView:
    """One entry of a conversation's timeline, as agents (or, without notes, the guest) see it."""

    id: int
    conversation_id: int
    direction: Literal["inbound", "outbound", "internal"]
    author: Author
    body: str
    status: DeliveryStatus
    responder: Responder | None
    agent_name: str | None
    created_at: datetime
    error_code: str | None
    sources: tuple[Mapping[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """An agent's reply or note as stored. `created` is False for a retried client id.
    `waited_seconds` is how long the guest had waited for a human, on the first reply after a
    handoff."""

    message_id: int
    created: bool
    conversation: ConversationSummary
    waited_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    agent_id: int
    password_hash: str = field(repr=False)
    disabled: bool
    display_name: str


@dataclass(frozen=True, slots=True)
class Membership:
    """A hotel an agent works in."""

    hotel_id: int
    slug: str
    name: str
    role: Literal["agent", "manager"]


@dataclass(frozen=True, slots=True)
class AgentSession:
    """A logged-in agent, from the session cookie."""

    agent_id: int
    display_name: str
    hotel_id: int
    hotel_slug: str
    csrf_token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class KnowledgeEntry:
    """One entry of a hotel's knowledge base. `embedded`: its vectors match its current text."""

    id: int
    title: str
    body: str
    keywords: str
    updated_at: datetime
    embedded: bool


@dataclass(frozen=True, slots=True)
class WebGuest:
    """A web-chat guest and their one conversation with the hotel."""

    hotel_id: int
    hotel_slug: str
    web_id: str
    guest_id: int
    conversation_id: int
    display_name: str | None


# --- Ports --------------------------------------------------------------------------------------


class Store(Protocol):
    """Durable state, in PostgreSQL. Every method with a `hotel_id` sees only that hotel."""

    async def route_whatsapp_sender(
        self, phone_number: str, *, fresh: bool = False
    ) -> SenderRoute | None: ...

    async def route_hotel(self, slug: str) -> int | None: ...

    async def hotel_profile(self, hotel_id: int) -> HotelProfile | None: ...

    async def record_inbound_whatsapp(
        self, route: SenderRoute, inbound: InboundWhatsApp, language: str | None
    ) -> InboundRecord: ...

    async def claim_reply(
        self,
        hotel_id: int,
        message_id: int,
        *,
        lease_seconds: float,
        history_turns: int,
        max_attempts: int,
    ) -> ReplyClaim: ...

    async def store_reply(
        self, hotel_id: int, message_id: int, draft: DraftReply
    ) -> ReplyStoreResult: ...

    async def release_reply(self, hotel_id: int, message_id: int) -> None: ...

    async def claim_send(
        self, hotel_id: int, message_id: int, *, lease_seconds: float, max_attempts: int
    ) -> SendClaim: ...

    async def record_sent(self, hotel_id: int, message_id: int, sent: SentMessage) -> None: ...

    async def record_send_failure(
        self, hotel_id: int, message_id: int, *, error_code: str, handoff_reason: str
    ) -> bool: ...

    async def record_delivered(self, hotel_id: int, message_id: int) -> None: ...

    async def release_send(self, hotel_id: int, message_id: int, *, maybe_sent: bool) -> None: ...

    async def apply_delivery_status(
        self,
        hotel_id: int,
        *,
        message_id: int | None,
        sid: str,
        status: DeliveryStatus,
        error_code: str | None,
    ) -> StatusUpdate | None: ...

    async def stalled_work(self, *, min_age_seconds: int, limit: int) -> list[StalledWork]: ...


class Inbox(Protocol):
    """What agents read and do in one hotel. Every method sees only hotel `hotel_id`; another
    hotel's conversation id is `NotFound`."""

    async def conversations(
        self, hotel_id: int, *, states: Sequence[ConversationState] | None, limit: int
    ) -> list[ConversationSummary]: ...

    async def conversation(
        self, hotel_id: int, conversation_id: int
    ) -> ConversationSummary | None: ...

    async def messages(
        self,
        hotel_id: int,
        conversation_id: int,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        include_internal: bool,
    ) -> list[MessageView]: ...

    async def mark_read(self, hotel_id: int, conversation_id: int, up_to: int) -> None: ...

    async def change_ownership(
        self, hotel_id: int, conversation_id: int, agent_id: int, action: Action
    ) -> ConversationSummary: ...

    async def add_agent_message(
        self,
        hotel_id: int,
        conversation_id: int,
        agent_id: int,
        *,
        body: str,
        client_id: str,
        internal: bool,
    ) -> AgentMessage: ...

    async def web_guest(
        self, hotel_id: int, web_id: str | None, display_name: str | None
    ) -> WebGuest: ...

    async def record_inbound_web(
        self, guest: WebGuest, *, body: str, client_id: str, language: str | None
    ) -> InboundRecord: ...


class Agents(Protocol):
    """Agent logins and sessions; these exist before a hotel is chosen."""

    async def credentials(self, email: str) -> AgentCredentials | None: ...

    async def memberships(self, agent_id: int) -> list[Membership]: ...

    async def create_session(
        self, token_hash: bytes, agent_id: int, hotel_id: int, csrf_token: str, ttl_seconds: float
    ) -> None: ...

    async def session(self, token_hash: bytes, ttl_seconds: float) -> AgentSession | None: ...

    async def switch_hotel(self, token_hash: bytes, hotel_id: int) -> None: ...

    async def end_session(self, token_hash: bytes) -> None: ...


class Events(Protocol):
    """Realtime events to Socket.IO rooms, sent after the change they report is committed.
    Best effort: a lost event costs nothing, clients catch up by their last-seen message id."""

    async def emit(
        self, event: str, payload: Mapping[str, object], *, room: str, namespace: str
    ) -> None: ...


class Passwords(Protocol):
    def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no hash, takes as long and returns False."""
        ...


class RateLimiter(Protocol):
    """Moving-window limits shared by every process; `limit` reads like "5/15 minutes"."""

    async def hit(self, key: str, *, limit: str) -> bool: ...

    async def allows(self, key: str, *, limit: str) -> bool: ...


class TokenSigner(Protocol):
    def sign(self, purpose: str, data: dict[str, Any]) -> str: ...

    def verify(self, purpose: str, token: str, *, max_age_seconds: float) -> dict[str, Any]: ...


class StopSignals(Protocol):
    """Tells a reply being generated that an agent took its conversation over."""

    async def stop(self, conversation_id: int) -> None: ...

    async def clear(self, conversation_id: int) -> None: ...

    async def stopped(self, conversation_id: int) -> bool: ...


class Embeddings(Protocol):
    """Turns text into unit vectors; `model` names what made them (stored with each vector).
    Raises `ModelError` when the model cannot answer."""

    @property
    def model(self) -> str: ...

    async def passages(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def query(self, text: str) -> list[float]: ...


class KnowledgeBase(Protocol):
    """A hotel's knowledge-base entries and their vectors. Every change bumps the hotel's
    knowledge version. Raises `NotFound`, `Conflict` (duplicate title), `InvalidInput`."""

    async def entries(self, hotel_id: int) -> list[KnowledgeEntry]: ...

    async def version(self, hotel_id: int) -> int: ...

    async def create(
        self, hotel_id: int, title: str, body: str, keywords: str
    ) -> KnowledgeEntry: ...

    async def update(
        self, hotel_id: int, entry_id: int, title: str, body: str, keywords: str
    ) -> KnowledgeEntry: ...

    async def delete(self, hotel_id: int, entry_id: int) -> None: ...

    async def upsert_many(
        self, hotel_id: int, entries: list[tuple[str, str, str]]
    ) -> tuple[int, int]: ...

    async def hotels_to_embed(self, model: str) -> list[int]: ...

    async def unembedded(self, hotel_id: int, model: str, limit: int) -> list[KnowledgeEntry]: ...

    async def save_embeddings(
        self,
        hotel_id: int,
        entry: KnowledgeEntry,
        text_vector: list[float],
        title_vector: list[float],
        model: str,
    ) -> bool: ...

    async def nearest(
        self, hotel_id: int, vector: list[float], model: str, *, limit: int
    ) -> list[Passage]: ...


class KnowledgeSearch(Protocol):
    """Finds the knowledge-base passages that answer a question."""

    async def search(self, hotel_id: int, question: str, *, limit: int) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer. Times in seconds: to the first token, and in all."""

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    time_to_first_token: float | None = None
    duration: float | None = None


OnDelta = Callable[[str], Awaitable[None]]


class ChatModel(Protocol):
    """A chat-completions model, streamed. Raises `ModelError` (with its `kind`) when it cannot
    answer; an exception raised by `on_delta` stops the stream and propagates unchanged."""

    async def complete(
        self,
        *,
        model: str,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        on_delta: OnDelta | None = None,
    ) -> Completion: ...


class WhatsAppSender(Protocol):
    """Sends WhatsApp messages through the provider (Twilio). Raises `SendError`."""

    async def send(
        self, route: SenderRoute, *, to_number: str, body: str, status_callback: str | None
    ) -> SentMessage: ...

    async def find_sent(
        self, route: SenderRoute, *, to_number: str, body: str, since: datetime
    ) -> SentMessage | None: ...


class SignatureValidator(Protocol):
    """Checks that a webhook really comes from the provider."""

    def is_valid(
        self, auth_token: str, url: str, params: Mapping[str, str], signature: str
    ) -> bool: ...


class JobQueue(Protocol):
    """Background jobs. Enqueueing the same job twice while it exists is a no-op."""

    async def enqueue_reply(self, hotel_id: int, message_id: int) -> None: ...

    async def enqueue_send(self, hotel_id: int, message_id: int) -> None: ...

    async def enqueue_embedding(self, hotel_id: int) -> None: ...


class LanguageDetector(Protocol):
    def detect(self, text: str) -> str | None:
        """ISO 639-1 code of `text`'s language, or None when too unsure."""
        ...


@dataclass(frozen=True, slots=True)
class Deps:
    """The adapters and tunables every service receives, wired in `bootstrap.py`.

    `chat_model` is None when no OpenAI API key is configured: the knowledge base answers alone.
    """

    store: Store
    inbox: Inbox
    agents: Agents
    events: Events
    knowledge: KnowledgeSearch
    knowledge_base: KnowledgeBase
    embeddings: Embeddings | None
    jobs: JobQueue
    whatsapp: WhatsAppSender
    signatures: SignatureValidator
    languages: LanguageDetector
    passwords: Passwords
    limiter: RateLimiter
    tokens: TokenSigner
    stop_signals: StopSignals
    chat_model: ChatModel | None
    default_model: str
    max_reply_tokens: int
    reply_lease_seconds: float
    status_callback_url: str | None
    max_attempts: int = 5
    history_turns: int = 12
    passages_per_prompt: int = 4
