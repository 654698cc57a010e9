"""The nouns of guest messaging and the rules between them; pure data, no I/O.

A hotel is the tenant. A guest writes on a channel (WhatsApp or web chat); each guest has one
conversation per channel with the hotel, which moves between states as the AI answers, hands off
to staff, an agent takes over, and the conversation is resolved. Every message is inbound (from the
guest) or outbound (to the guest), and has an author.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hotelchat.domain.media import DeclaredMedia


class Channel(enum.StrEnum):
    WHATSAPP = "whatsapp"
    WEB = "web"


class ConversationState(enum.StrEnum):
    """Who is answering the guest right now."""

    AI = "ai"  # the assistant answers
    NEEDS_HUMAN = "needs_human"  # handed off; waiting for an agent
    AGENT = "agent"  # an agent owns the conversation
    RESOLVED = "resolved"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Author(enum.StrEnum):
    GUEST = "guest"
    AI = "ai"
    AGENT = "agent"
    SYSTEM = "system"  # holding and error messages the platform sends on its own


class Responder(enum.StrEnum):
    """What produced an automated reply; recorded on the reply."""

    OPENAI = "openai"  # a chat-completions model (OpenAI or any compatible server)
    KNOWLEDGE_BASE = "knowledge_base"  # the best knowledge-base passage, no model
    HOLDING = "holding"  # the model failed; a holding message and a handoff
    CACHE = "cache"  # the model's earlier answer to the same question (response cache)
    CONSENT = "consent"  # the confirmation of an opt-out or opt-in keyword (STOP, START…)


class ReplyState(enum.StrEnum):
    """Progress of the automated reply to one inbound message."""

    PENDING = "pending"
    ANSWERED = "answered"
    SKIPPED = "skipped"  # not the AI's turn: an agent owns it, or a newer message supersedes it


class DeliveryStatus(enum.StrEnum):
    """Where a message is on its way. Outbound ones follow Twilio's message status values:
    https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
    """

    RECEIVED = "received"  # inbound, stored
    PENDING = "pending"  # outbound, stored, not yet handed to the provider
    SENDING = "sending"  # outbound, handed to the provider, no answer yet
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


# The order a status can only move forwards in. Failure outranks everything but `read`: Twilio
# reports `undelivered` after `sent`, and a message the guest has read was certainly delivered.
_STATUS_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.RECEIVED: 0,
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.ACCEPTED: 2,
    DeliveryStatus.QUEUED: 3,
    DeliveryStatus.SENT: 4,
    DeliveryStatus.DELIVERED: 5,
    DeliveryStatus.UNDELIVERED: 6,
    DeliveryStatus.FAILED: 6,
    DeliveryStatus.READ: 7,
}


# Twilio's message status values, mapped to ours. Twilio's own "sending" means what ours does:
# handed over, not yet confirmed.
# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
_PROVIDER_STATUS: dict[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.ACCEPTED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "partially_delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}


def provider_status(value: str | None) -> DeliveryStatus | None:
    """Our status for a Twilio message status, or None for one we do not track."""
    return _PROVIDER_STATUS.get((value or "").strip().lower())


def status_advances(current: DeliveryStatus, new: DeliveryStatus) -> bool:
    """True when a message in `current` may move to `new`: statuses never move backwards, so
    repeated and out-of-order status callbacks are harmless."""
    return _STATUS_RANK[new] > _STATUS_RANK[current]


def status_rank(status: DeliveryStatus) -> int:
    """The position of `status` in the forward-only order (see `status_advances`)."""
    return _STATUS_RANK[status]


# The longest message we send a guest: Twilio refuses longer bodies (error 21617; "up to 1,600
# characters", https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
MAX_OUTBOUND_CHARS = 1600
# The longest reply (the assistant's or an agent's) in characters: sent as ordered parts of at
# most MAX_OUTBOUND_CHARS each (`domain.splitting`).
MAX_REPLY_BODY_CHARS = 4800

WHATSAPP_WINDOW = timedelta(hours=24)


def whatsapp_window_open(
    last_inbound_at: datetime | None, now: datetime, closed_at: datetime | None = None
) -> bool:
    """True while free-form WhatsApp messages may be sent: within 24 hours of the guest's last
    inbound message, unless Twilio answered 63016 since (`closed_at`, later than that message).
    Outside it WhatsApp only accepts approved templates (Twilio error 63016).
    https://www.twilio.com/docs/whatsapp/key-concepts#the-24-hour-window-or-24-hour-session
    """
    if last_inbound_at is None or (closed_at is not None and closed_at >= last_inbound_at):
        return False
    return now - last_inbound_at < WHATSAPP_WINDOW


@dataclass(frozen=True, slots=True)
class InboundWhatsApp:
    """One inbound WhatsApp message as Twilio's webhook reports it, already validated.

    `from_number` and `to_number` are E.164 (`+15551234567`), without the `whatsapp:` prefix.
    """

    message_sid: str
    account_sid: str
    from_number: str
    to_number: str
    body: str
    wa_id: str
    profile_name: str | None
    num_media: int
    extra: dict[str, str] = field(default_factory=dict)
    media: tuple[DeclaredMedia, ...] = ()  # MediaUrl{N} / MediaContentType{N}, checked


@dataclass(frozen=True, slots=True)
class SenderRoute:
    """The hotel behind one of our WhatsApp numbers, with the Twilio credentials it uses.

    `auth_token` is a secret: never log it.
    """

    hotel_id: int
    sender_id: int
    phone_number: str
    account_sid: str
    auth_token: str = field(repr=False)
    hotel_slug: str = ""


@dataclass(frozen=True, slots=True)
class HotelProfile:
    """What the assistant knows of the hotel itself."""

    id: int
    slug: str
    name: str
    timezone: str
    default_language: str
    description: str
    ai_model: str | None
    ai_enabled: bool
    knowledge_version: int = 0
    context_token_budget: int = 2500  # tokens of prompt the model sees: instructions, facts, turns
    monthly_budget_usd: float | None = None  # None: no budget
    suspended: bool = False  # its numbers route nowhere and the assistant is silent
    image_understanding: bool = False  # guests' photos are passed to a vision-capable model


@dataclass(frozen=True, slots=True)
class Passage:
    """One knowledge-base entry retrieved for a question; `score` is in [0, 1]."""

    entry_id: int
    title: str
    body: str
    score: float
    # With vector retrieval, what `score` was made of: the question's cosine with the entry's
    # head (title and keywords), with its whole text, and with its best passage (its whole text
    # or one of its sentence windows). None for full-text search.
    head_score: float | None = None
    text_score: float | None = None
    passage_score: float | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of a conversation, as context for the model."""

    author: Author
    body: str


# What a guest can ask staff to do through the assistant; the dashboard lists them.
SERVICE_REQUEST_KINDS = (
    "housekeeping",
    "late_checkout",
    "early_checkin",
    "taxi",
    "maintenance",
    "room_service",
    "amenities",
    "other",
)
