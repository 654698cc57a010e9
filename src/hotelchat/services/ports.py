"""The ports services depend on: small Protocols, and the data that crosses them.

`bootstrap.py` wires the real adapters (PostgreSQL, arq, OpenAI, Twilio, Socket.IO) into `Deps`;
tests wire the same adapters against real PostgreSQL and Redis and loopback emulators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from hotelchat.domain.model import (
    Author,
    Channel,
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
    reason: str


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


# --- Ports --------------------------------------------------------------------------------------


class Store(Protocol):
    """Durable state, in PostgreSQL. Every method with a `hotel_id` sees only that hotel."""

    async def route_whatsapp_sender(
        self, phone_number: str, *, fresh: bool = False
    ) -> SenderRoute | None: ...

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
    ) -> None: ...

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


class KnowledgeSearch(Protocol):
    """Finds the knowledge-base passages that answer a question."""

    async def search(self, hotel_id: int, question: str, *, limit: int) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None


class ChatModel(Protocol):
    """A chat-completions model. Raises `ModelError` (with its `kind`) when it cannot answer."""

    async def complete(
        self, *, model: str, messages: Sequence[PromptMessage], max_tokens: int
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
    knowledge: KnowledgeSearch
    jobs: JobQueue
    whatsapp: WhatsAppSender
    signatures: SignatureValidator
    languages: LanguageDetector
    chat_model: ChatModel | None
    default_model: str
    max_reply_tokens: int
    reply_lease_seconds: float
    status_callback_url: str | None
    max_attempts: int = 5
    history_turns: int = 12
    passages_per_prompt: int = 3
