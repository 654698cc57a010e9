"""The ports services depend on: small Protocols, and the data that crosses them.

`bootstrap.py` wires the real adapters (PostgreSQL, arq, OpenAI, Twilio, Socket.IO) into `Deps`;
tests wire the same adapters against real PostgreSQL and Redis and loopback emulators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

from hotelchat.domain.consent import DEFAULT_KEYWORDS, KeywordTable
from hotelchat.domain.conversation import Action
from hotelchat.domain.media import TWILIO_MEDIA_HOST, MediaState
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
from hotelchat.domain.pricing import PriceTable
from hotelchat.domain.templates import Journey, Template
from hotelchat.domain.tenants import HotelSpec, Owner, SenderSpec

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
    month_spend_usd: float = 0.0  # the hotel's AI spend this month (its time zone), US dollars
    media: tuple[MediaItem, ...] = ()  # what the guest sent with the question


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
    # Bounded label for metrics: model_error, no_answer, media, outage, budget, guard,
    # guest_request.
    handoff_kind: str | None = None
    sources: tuple[Passage, ...] = ()  # the knowledge-base passages the reply was grounded in
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None  # what the model calls behind it cost, US dollars
    tool_calls: tuple[ToolUse, ...] = ()  # what the assistant did on the way, in order


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One tool the assistant called while answering, as staff see it next to the reply."""

    name: str
    arguments: Mapping[str, object]
    outcome: str  # a short summary: "found 1 reservation", "request #12 opened", an error


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
    media: tuple[MediaItem, ...] = ()  # attachments, sent as MediaUrl
    # A template send: `body` is then our rendered preview, and these go to Twilio instead.
    content_sid: str | None = None
    content_variables: Mapping[str, str] | None = None


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
class PartState:
    """One stored part of a long outbound message (see `domain.splitting`): its 0-based
    `index`, its text, its MessageSid once Twilio took it, its delivery status, and when a send
    of it was first attempted (set: an earlier attempt may have reached Twilio)."""

    index: int
    body: str
    sid: str | None
    status: DeliveryStatus
    attempted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Consent:
    """A guest's standing with one hotel for proactive messages: opted out or not, since
    `changed_at`, by `keyword` (None: never sent one)."""

    opted_out: bool
    changed_at: datetime | None = None
    keyword: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentChanged:
    """A keyword changed the guest's consent; `reply_id` is the stored confirmation."""

    reply_id: int
    conversation_id: int
    opted_out: bool


@dataclass(frozen=True, slots=True)
class ConsentUnchanged:
    """A keyword that changed nothing (the guest was already in that state, or the keyword's
    message was handled before): no second confirmation. `reply_id` is the confirmation an
    earlier run stored for this very message, if any, still to be sent when unsent."""

    conversation_id: int
    reply_id: int | None = None
    needs_send: bool = False


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
    opted_out_at: datetime | None = None  # the guest opted out of proactive messages then
    window_closed_at: datetime | None = None  # Twilio answered 63016 (see whatsapp_window_open)


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
    tool_calls: tuple[Mapping[str, object], ...] = ()  # [{name, arguments, outcome}]
    media: tuple[MediaItem, ...] = ()
    parts: tuple[DeliveryStatus, ...] = ()  # each part's status, for a message sent in parts


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
    password_change_required: bool = False  # logged in with a one-time password


# What a stored passage of an entry is: its head (title and keywords), its whole text, or a
# window of a few sentences of a long entry under its head.
PassageKind = Literal["head", "text", "window"]


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


@dataclass(frozen=True, slots=True)
class Reservation:
    """A stay at the hotel, as a property-management system (or a CSV export of one) reports
    it. Dates are the hotel's local dates; `phone_number` is E.164. `notes` are for staff and
    never reach the model."""

    code: str
    guest_name: str
    check_in: date
    check_out: date
    status: Literal["confirmed", "checked_in", "checked_out", "cancelled"] = "confirmed"
    room_type: str | None = None
    adults: int = 1
    children: int = 0
    phone_number: str | None = None
    email: str | None = None
    notes: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    """Something a guest asked staff to do (housekeeping, a taxi…), filed by the assistant."""

    id: int
    conversation_id: int
    kind: str  # one of `domain.model.SERVICE_REQUEST_KINDS`
    details: str
    status: Literal["open", "done", "cancelled"]
    created_at: datetime
    closed_at: datetime | None
    closed_by_name: str | None
    guest_name: str | None


@dataclass(frozen=True, slots=True)
class Spend:
    """A hotel's AI spend this month, counted in its own time zone, in US dollars."""

    spent_usd: float
    budget_usd: float | None  # None: no budget

    @property
    def used(self) -> float | None:
        """The share of the budget used (1.0 = all of it), or None without a budget."""
        if self.budget_usd is None:
            return None
        if self.budget_usd <= 0:
            return 1.0
        return self.spent_usd / self.budget_usd


@dataclass(frozen=True, slots=True)
class AssistantSettings:
    """What a hotel's managers set for the assistant."""

    ai_enabled: bool
    ai_model: str | None
    monthly_budget_usd: float | None
    context_token_budget: int
    image_understanding: bool = False  # guests' photos shown to a vision-capable model


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A model's answer kept for the same question: its text, language and sources."""

    body: str
    language: str | None
    model: str
    sources: tuple[Passage, ...] = ()


# --- Ports --------------------------------------------------------------------------------------


class Store(Protocol):
    """Durable state, in PostgreSQL. Every method with a `hotel_id` sees only that hotel."""

    async def route_whatsapp_sender(
        self, phone_number: str, *, fresh: bool = False
    ) -> SenderRoute | None: ...

    async def route_hotel(self, slug: str, *, for_guests: bool = True) -> int | None:
        """The hotel with `slug` (None when there is none, or, `for_guests`, when it is
        suspended)."""
        ...

    async def hotel_profile(self, hotel_id: int) -> HotelProfile | None: ...

    async def whatsapp_senders(self, hotel_id: int) -> list[SenderRoute]:
        """The hotel's routable WhatsApp numbers with their Twilio credentials."""
        ...

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

    async def renew_reply_lease(
        self, hotel_id: int, message_id: int, *, lease_seconds: float
    ) -> bool: ...

    async def claim_send(
        self, hotel_id: int, message_id: int, *, lease_seconds: float, max_attempts: int
    ) -> SendClaim: ...

    async def record_sent(self, hotel_id: int, message_id: int, sent: SentMessage) -> None: ...

    async def record_send_failure(
        self, hotel_id: int, message_id: int, *, error_code: str, handoff_reason: str
    ) -> bool: ...

    async def record_delivered(self, hotel_id: int, message_id: int) -> None: ...

    async def release_send(self, hotel_id: int, message_id: int, *, maybe_sent: bool) -> None: ...

    async def renew_send_lease(
        self, hotel_id: int, message_id: int, *, lease_seconds: float
    ) -> bool: ...

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
        attachments: Sequence[NewMedia] = (),
    ) -> AgentMessage: ...

    async def web_guest(
        self, hotel_id: int, web_id: str | None, display_name: str | None
    ) -> WebGuest: ...

    async def record_inbound_web(
        self,
        guest: WebGuest,
        *,
        body: str,
        client_id: str,
        language: str | None,
        attachments: Sequence[NewMedia] = (),
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

    async def password_hash(self, agent_id: int) -> str | None: ...

    async def change_password(self, agent_id: int, password_hash: str) -> None:
        """Store the agent's new password hash; it no longer needs changing."""
        ...


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

    async def replace_all(
        self, hotel_id: int, entries: list[tuple[str, str, str]]
    ) -> tuple[int, int, int]:
        """Make the entries exactly `entries` (by title, case aside), touching only those that
        differ; returns (added, updated, removed)."""
        ...

    async def hotels_to_embed(self, model: str) -> list[int]: ...

    async def unembedded(self, hotel_id: int, model: str, limit: int) -> list[KnowledgeEntry]: ...

    async def save_passages(
        self,
        hotel_id: int,
        entry: KnowledgeEntry,
        passages: Sequence[tuple[PassageKind, str, list[float]]],
        model: str,
    ) -> bool:
        """Replace the entry's passages (kind, text, vector) by `passages`, unless the entry
        was edited since `entry` was read; True when stored."""
        ...

    async def nearest(
        self, hotel_id: int, vector: list[float], model: str, *, limit: int
    ) -> list[Passage]:
        """The entries whose passages by `model` are closest to `vector`, best first."""
        ...


class KnowledgeSearch(Protocol):
    """Finds the knowledge-base passages that answer a question."""

    async def search(self, hotel_id: int, question: str, *, limit: int) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: its name, what it does, and a JSON Schema of its
    arguments. https://platform.openai.com/docs/guides/function-calling"""

    name: str
    description: str
    parameters: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A call the model asked for. `arguments` is the model's raw JSON text (it may be
    malformed: the caller validates it)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class PromptMessage:
    """One message of a chat prompt. An assistant message may carry the `tool_calls` it made;
    a `tool` message answers the call `tool_call_id`."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    images: tuple[str, ...] = ()  # a user message's images, as URLs (`data:` URLs of ours)


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer: text, or calls of the tools offered (or both). Times in seconds: to
    the first token, and in all. Token counts are the API's usage figures."""

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    time_to_first_token: float | None = None
    duration: float | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()


OnDelta = Callable[[str], Awaitable[None]]


class ChatModel(Protocol):
    """A chat-completions model, streamed. Raises `ModelError` (with its `kind`) when it cannot
    answer; an exception raised by `on_delta` stops the stream and propagates unchanged.
    `tool_choice` "none" offers the tools' descriptions but forbids calling them."""

    async def complete(
        self,
        *,
        model: str,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        on_delta: OnDelta | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: Literal["auto", "none"] = "auto",
    ) -> Completion: ...


class TokenCounter(Protocol):
    """Counts tokens the way the chat model's tokenizer does (near enough for budgets)."""

    def count(self, text: str) -> int: ...


class CircuitBreaker(Protocol):
    """Shared by all workers: `allow` says whether a call may go to the provider now; every
    allowed call reports its outcome."""

    async def allow(self) -> bool: ...

    async def record_success(self) -> None: ...

    async def record_failure(self) -> None: ...


class ConcurrencyLimit(Protocol):
    """At most N calls at once across all workers. `slot` waits up to `wait_seconds` seconds
    and raises `TemporaryFailure` when none came free."""

    def slot(self, *, wait_seconds: float) -> AbstractAsyncContextManager[None]: ...


class AnswerCache(Protocol):
    """Earlier answers to the same question, by a key that names everything they depend on.
    Bounded; best effort (a failing cache is a miss)."""

    async def get(self, hotel_id: int, key: str) -> CachedAnswer | None: ...

    async def put(self, hotel_id: int, key: str, answer: CachedAnswer) -> None: ...


class ReservationSource(Protocol):
    """Where a hotel's reservations come from: a CSV export today, a property-management
    system's API tomorrow. `name` is recorded with each reservation. Raises `InvalidInput`
    (naming the record) for a malformed one."""

    @property
    def name(self) -> str: ...

    def reservations(self) -> AsyncIterator[Reservation]: ...


class Reservations(Protocol):
    """A hotel's reservations. Every method sees only hotel `hotel_id`."""

    async def upsert_many(
        self, hotel_id: int, reservations: Sequence[Reservation], *, source: str
    ) -> tuple[int, int]:
        """Add or update by code; returns (added, updated)."""
        ...

    async def of_conversation(self, hotel_id: int, conversation_id: int) -> list[Reservation]:
        """The current and coming reservations of the guest of this conversation only: matched
        by their WhatsApp number, or by the web-chat identity linked to a reservation."""
        ...

    async def find(self, hotel_id: int, code: str) -> Reservation | None:
        """Reservation `code` of this hotel, or None."""
        ...

    async def link_web_guest(
        self, hotel_id: int, code: str, web_id: str, *, issued_at: datetime | None = None
    ) -> bool:
        """Tie reservation `code` to a web-chat guest; False when there is no such code.
        `issued_at` is when the link used was issued (None: now): a reservation linked to
        another guest moves only for a link issued later, else `Conflict`."""
        ...


class ServiceRequests(Protocol):
    """A hotel's service requests. Raises `NotFound` for another hotel's request, `Conflict`
    when closing one that is closed already."""

    async def create(
        self, hotel_id: int, conversation_id: int, *, kind: str, details: str, message_id: int
    ) -> tuple[ServiceRequest, bool]:
        """File a request (True) or return the one already filed for this message and kind
        (False)."""
        ...

    async def list(
        self, hotel_id: int, *, status: Literal["open", "done", "cancelled"] | None, limit: int
    ) -> list[ServiceRequest]: ...

    async def close(
        self,
        hotel_id: int,
        request_id: int,
        agent_id: int,
        status: Literal["done", "cancelled"],
    ) -> ServiceRequest: ...


class Hotels(Protocol):
    """A hotel's own settings and spend."""

    async def month_spend(self, hotel_id: int) -> Spend: ...

    async def all_spend(self) -> list[tuple[str, Spend]]:
        """(slug, spend) of every hotel, for the budget gauge."""
        ...

    async def assistant_settings(self, hotel_id: int) -> AssistantSettings: ...

    async def update_assistant_settings(
        self, hotel_id: int, changes: Mapping[str, object]
    ) -> AssistantSettings:
        """Set only the named settings (`AssistantSettings` field names), so two managers
        saving different settings at once both keep theirs; returns all of them."""
        ...


class WhatsAppSender(Protocol):
    """Sends WhatsApp messages through the provider (Twilio). Raises `SendError`."""

    async def send(
        self,
        route: SenderRoute,
        *,
        to_number: str,
        body: str,
        status_callback: str | None,
        media_urls: Sequence[str] = (),
        content_sid: str | None = None,
        content_variables: Mapping[str, str] | None = None,
    ) -> SentMessage:
        """Send `body` (with the files at `media_urls`), or with `content_sid` the template
        with `content_variables` (no body: `body` is only our rendered preview)."""
        ...

    async def find_sent(
        self, route: SenderRoute, *, to_number: str, body: str, since: datetime
    ) -> SentMessage | None: ...


class SendPacer(Protocol):
    """Paces sends per sender number, shared by every process."""

    async def wait(self, sender: str) -> None:
        """Return once `sender` (E.164) may send one more message. Raises `SendError`
        (retryable, surely not sent) when no slot frees up within the pacer's bounded wait."""
        ...


class MessageParts(Protocol):
    """The parts of long outbound messages, in PostgreSQL. Every method sees only hotel
    `hotel_id`; none holds a lock once it returns."""

    async def prepare(
        self, hotel_id: int, message_id: int, bodies: Sequence[str]
    ) -> list[PartState]:
        """Store `bodies` as the message's parts unless it has parts already (then the stored
        ones win); returns them in order."""
        ...

    async def begin(
        self, hotel_id: int, message_id: int, index: int, *, lease_seconds: float
    ) -> None:
        """Mark part `index` as being sent (its first attempt time kept) and renew the
        message's send lease by `lease_seconds`."""
        ...

    async def record_sent(
        self, hotel_id: int, message_id: int, index: int, sent: SentMessage
    ) -> None: ...

    async def release(
        self, hotel_id: int, message_id: int, index: int, *, maybe_sent: bool
    ) -> None:
        """Give part `index` back after a retryable failure; unless Twilio may have it,
        forget the attempt."""
        ...

    async def finish(self, hotel_id: int, message_id: int) -> DeliveryStatus:
        """Every part is with Twilio: the message takes its parts' status (the least advanced
        one; a failed part fails it) and its send lease ends."""
        ...

    async def statuses(
        self, hotel_id: int, message_ids: Sequence[int]
    ) -> dict[int, list[DeliveryStatus]]:
        """The parts' statuses, in order, of those of `message_ids` that have parts."""
        ...

    async def apply_status(
        self,
        hotel_id: int,
        *,
        message_id: int,
        index: int,
        sid: str,
        status: DeliveryStatus,
        error_code: str | None,
    ) -> StatusUpdate | None:
        """A status callback for one part: the part moves forwards (never back), then the
        message takes its parts' status if that is forwards. A failed part hands the
        conversation to staff. None when nothing moved."""
        ...


class Consents(Protocol):
    """Guests' opt-outs of proactive messages, per hotel, in PostgreSQL."""

    async def consent(self, hotel_id: int, guest_id: int) -> Consent: ...

    async def number_opted_out(self, hotel_id: int, phone_number: str) -> bool:
        """Whether the hotel's guest with this WhatsApp number (E.164) opted out; False when
        no guest has it yet (a reservation's guest who never wrote)."""
        ...

    async def inbound_keyword_candidate(
        self, hotel_id: int, message_id: int
    ) -> tuple[str, str | None] | None:
        """`(body, language)` of inbound WhatsApp message `message_id` while its reply is
        pending; None otherwise (gone, answered, skipped, or not WhatsApp)."""
        ...

    async def apply_keyword(
        self,
        hotel_id: int,
        message_id: int,
        *,
        opted_out: bool,
        keyword: str,
        confirmation: str,
        language: str,
    ) -> ConsentChanged | ConsentUnchanged | Gone:
        """In one transaction: when inbound message `message_id` was not handled yet and the
        guest's consent differs from `opted_out`, change it (with the time and `keyword`) and
        store `confirmation` as the message's automated reply; else store nothing new. Either
        way the message is no longer pending for the assistant."""
        ...


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

    async def enqueue_media(self, hotel_id: int, message_id: int) -> None: ...


# --- media ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One file of a message, as stored. `state` and `error` are what staff see."""

    id: int
    message_id: int
    position: int
    content_type: str
    state: MediaState
    error: str | None = None
    size_bytes: int | None = None  # bytes, once known
    storage_key: str | None = None
    filename: str | None = None
    source_url: str | None = None  # Twilio's MediaUrl (inbound WhatsApp only)
    media_sid: str | None = None
    attempts: int = 0
    twilio_deleted: bool = False
    conversation_id: int | None = None  # when read with its message
    internal: bool = False  # on an internal note (never shown to the guest)


@dataclass(frozen=True, slots=True)
class NewMedia:
    """A file already in object storage, to attach to a message being stored."""

    storage_key: str
    content_type: str
    size_bytes: int
    filename: str | None


@dataclass(frozen=True, slots=True)
class Download:
    """A file fetched from the provider: its declared type and its bytes."""

    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MediaClaim:
    """Inbound media this job now owns: pending downloads, and stored items whose copy at
    Twilio is still to be deleted. `retry_in` (seconds) is set when another job holds some.
    `route` holds the hotel's Twilio credentials (None: the number is gone)."""

    conversation_id: int
    message_sid: str | None
    route: SenderRoute | None
    items: tuple[MediaItem, ...]
    retry_in: float | None = None


class MediaStore(Protocol):
    """Media rows, in PostgreSQL. Every method sees only hotel `hotel_id`."""

    async def claim_downloads(
        self, hotel_id: int, message_id: int, *, lease_seconds: float
    ) -> MediaClaim | None:
        """Lease the message's unfinished inbound media for `lease_seconds`, counting an
        attempt on each; None when there is no such message."""
        ...

    async def mark_stored(
        self, hotel_id: int, media_id: int, *, storage_key: str, size_bytes: int, content_type: str
    ) -> None: ...

    async def mark_final(
        self, hotel_id: int, media_id: int, state: MediaState, error: str
    ) -> None: ...

    async def release(self, hotel_id: int, media_id: int, error: str) -> None:
        """Give back the lease after a transient failure, noting `error` for staff."""
        ...

    async def mark_twilio_deleted(self, hotel_id: int, media_id: int) -> None: ...

    async def item(self, hotel_id: int, media_id: int) -> MediaItem | None: ...

    async def of_message(self, hotel_id: int, message_id: int) -> list[MediaItem]: ...

    async def stalled(self, *, min_age_seconds: int, limit: int) -> list[tuple[int, int]]:
        """(hotel_id, message_id) of inbound media left pending without a live job."""
        ...


class ObjectStorage(Protocol):
    """Where media bytes live (S3-compatible, or a folder). Keys start with the hotel's prefix
    (`hotels/<id>/`); nothing in it is public. Raises `NotFound` for a missing key and
    `Unavailable` when the storage does not answer."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...


class MediaSource(Protocol):
    """The provider's copy of inbound media (Twilio). `download` raises `MediaRefused`
    (over `max_bytes`, not a file) or `TemporaryFailure` (the media endpoint is down);
    `delete` raises `TemporaryFailure`."""

    async def download(self, route: SenderRoute, url: str, *, max_bytes: int) -> Download: ...

    async def delete(self, route: SenderRoute, message_sid: str, media_sid: str) -> None: ...


class LanguageDetector(Protocol):
    def detect(self, text: str) -> str | None:
        """ISO 639-1 code of `text`'s language, or None when too unsure."""
        ...


# --- templates, journeys, consent -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueStay:
    """A reservation a journey has not handled yet, with what choosing and filling the template
    needs. `fields` are the values variables may name (`domain.templates.RESERVATION_FIELDS`)."""

    reservation_id: int
    phone_number: str | None
    anchor: date
    guest_language: str | None
    fields: Mapping[str, str]


class TemplateStore(Protocol):
    """A hotel's WhatsApp templates and journeys, in PostgreSQL. Every method with a
    `hotel_id` sees only that hotel. Raises `NotFound`, `Conflict`, `InvalidInput`."""

    async def templates(self, hotel_id: int) -> list[Template]: ...

    async def save_template(self, hotel_id: int, template: Template) -> bool:
        """Add or replace (by ContentSid); True when added."""
        ...

    async def remove_template(self, hotel_id: int, content_sid: str) -> bool: ...

    async def replace_synced(
        self, hotel_id: int, templates: Sequence[Template]
    ) -> tuple[int, int, int]:
        """Make the hotel's synced templates exactly `templates` (hand-made ones stay);
        returns (added, changed, removed)."""
        ...

    async def hotels_to_sync(self) -> list[int]: ...

    async def add_template_message(
        self,
        hotel_id: int,
        conversation_id: int,
        agent_id: int,
        *,
        template: Template,
        variables: Mapping[str, str],
        client_id: str,
    ) -> AgentMessage:
        """Store an agent's template send (taking the conversation over), once per
        `client_id`; allowed outside the 24-hour window."""
        ...

    async def mark_window_closed(
        self, hotel_id: int, message_id: int, *, notice: str, reason: str
    ) -> tuple[int, int] | None:
        """Twilio refused message `message_id` with 63016: close its conversation's window, add
        `notice` to its timeline and set the handoff reason. Returns (conversation id, notice
        id); None when there is no such message or its notice exists already."""
        ...

    async def journeys(self, hotel_id: int) -> list[Journey]: ...

    async def add_journey(self, hotel_id: int, journey: Journey) -> int: ...

    async def remove_journey(self, hotel_id: int, name: str) -> bool: ...

    async def journey_hotels(self) -> list[int]: ...

    async def due_stays(self, hotel_id: int, journey: Journey, today: date) -> list[DueStay]:
        """Reservations whose anchor date makes `journey` due around `today` (hotel time) and
        that it has not handled yet."""
        ...

    async def claim_journey_send(
        self,
        hotel_id: int,
        journey_id: int,
        stay: DueStay,
        *,
        outcome: str,
        template: Template | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> int | None:
        """Record that `journey_id` handled `stay`, once: with outcome `queued`, in the same
        transaction, store the outbound template message (and the guest and conversation it
        needs). Returns the message id to send; None when it was handled before or nothing
        is to be sent."""
        ...


class ContentSource(Protocol):
    """A Twilio account's Content API templates (with approval status). Raises `SendError`."""

    async def templates(self, route: SenderRoute) -> list[Template]: ...


# --- provisioning (the CLI and the Kubernetes operator) -------------------------------------


@dataclass(frozen=True, slots=True)
class TenantHotel:
    """A hotel as provisioning sees it: its record, not its guests."""

    id: int
    slug: str
    chain_slug: str
    name: str
    suspended: bool
    owner_uid: str | None  # the Hotel resource that owns it, if any
    owner_name: str | None  # its `namespace/name`


@dataclass(frozen=True, slots=True)
class StoredSender:
    """A WhatsApp number of a hotel. `auth_token` is decrypted (a secret: never log it);
    `token_current` is False when it is stored in plain text or under an older key."""

    id: int
    number: str
    account_sid: str
    auth_token: str = field(repr=False)
    token_current: bool = True
    retired: bool = False


@dataclass(frozen=True, slots=True)
class StoredMembership:
    agent_id: int
    email: str
    name: str
    role: str


class TenantStore(Protocol):
    """Chains, hotels, their numbers and their agents, for whoever provisions tenants: the
    schema owner (the CLI) or the operator's role (which reads no guest data). Each method is
    its own transaction. Raises `Unavailable` when PostgreSQL is down."""

    async def ensure_chain(self, slug: str, name: str, *, rename: bool = False) -> int:
        """The id of chain `slug`, created with `name` if missing (renamed with `rename`)."""
        ...

    async def hotel_record(self, slug: str) -> TenantHotel | None: ...

    async def create_hotel(
        self,
        *,
        chain_slug: str,
        slug: str,
        name: str,
        description: str = "",
        timezone: str = "UTC",
        default_language: str = "en",
        languages: Sequence[str] = (),
        owner: Owner | None = None,
    ) -> int:
        """Raises `NotFound` (no such chain) or `Conflict` (the slug is taken)."""
        ...

    async def update_hotel(self, hotel_id: int, spec: HotelSpec) -> list[str]:
        """Make the hotel's record and assistant settings match `spec` (None assistant fields
        are left alone); returns the names of the fields that changed."""
        ...

    async def set_owner(self, hotel_id: int, owner: Owner | None) -> None: ...

    async def update_suspended(self, hotel_id: int, *, suspended: bool) -> None: ...

    async def senders(self, hotel_id: int) -> list[StoredSender]: ...

    async def save_sender(self, hotel_id: int, sender: SenderSpec) -> int:
        """Route `sender.number` to the hotel (again, if it was retired), storing its account
        and encrypted token; raises `Conflict` when another hotel routes the number."""
        ...

    async def retire_sender(self, hotel_id: int, sender_id: int) -> None: ...

    async def agent_chain(self, email: str) -> tuple[int, str] | None:
        """`(agent_id, chain_slug)` of the agent with `email`, or None."""
        ...

    async def create_agent(
        self, *, chain_slug: str, email: str, name: str, password: str, change_required: bool
    ) -> int:
        """Raises `Conflict` when an agent of another chain has the email."""
        ...

    async def rename_agent(self, agent_id: int, name: str) -> None: ...

    async def add_agent(
        self,
        *,
        chain_slug: str,
        email: str,
        display_name: str,
        password: str,
        hotel_slugs: list[str],
        role: str = "agent",
    ) -> int:
        """Create agent `email` of the chain, or update their name, password and hotels;
        raises `NotFound`, `InvalidInput`, `Conflict` (an agent of another chain)."""
        ...

    async def memberships(self, hotel_id: int) -> list[StoredMembership]: ...

    async def set_membership(self, agent_id: int, hotel_id: int, role: str) -> None: ...

    async def remove_membership(self, agent_id: int, hotel_id: int) -> None:
        """Remove the agent from the hotel and end their sessions in it."""
        ...

    async def erase_hotel(self, hotel_id: int) -> dict[str, int]:
        """Delete every row of the hotel; returns how many of each kind."""
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
    reservations: Reservations
    service_requests: ServiceRequests
    hotels: Hotels
    chat_model: ChatModel | None
    default_model: str
    max_reply_tokens: int
    reply_lease_seconds: float
    status_callback_url: str | None
    token_counter: TokenCounter
    prices: PriceTable
    breaker: CircuitBreaker | None = None
    model_slots: ConcurrencyLimit | None = None
    answer_cache: AnswerCache | None = None
    model_slot_wait_seconds: float = 20.0
    max_attempts: int = 5
    # Leases are renewed while their job runs for at most this long (the job timeout).
    lease_renewal_limit_seconds: float = 120.0
    history_turns: int = 12
    passages_per_prompt: int = 4
    media: MediaStore | None = None
    storage: ObjectStorage | None = None
    media_source: MediaSource | None = None
    media_base_url: str = TWILIO_MEDIA_HOST  # where Twilio's inbound MediaUrls must point
    public_url: str | None = None  # PUBLIC_BASE_URL without a trailing slash
    parts: MessageParts | None = None
    consents: Consents | None = None
    pacer: SendPacer | None = None
    opt_out_keywords: KeywordTable = DEFAULT_KEYWORDS
    templates: TemplateStore | None = None
    content: ContentSource | None = None
