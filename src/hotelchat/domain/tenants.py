"""The desired state of a tenant, as an operator (a person with the CLI, or the Kubernetes
operator reading a `Hotel` resource) states it; pure data and the checks that need no I/O.

A chain is a customer, a hotel its tenant. The Kubernetes operator maps a namespace to a chain
and a `Hotel` resource to a hotel; both provisioning paths end in `services.tenants`.
"""

from __future__ import annotations

import hashlib
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Literal

from hotelchat.domain.addresses import is_e164
from hotelchat.domain.errors import InvalidInput

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
LANGUAGE = re.compile(r"^[a-z]{2}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_AUTH_TOKEN, MAX_AUTH_TOKEN = 16, 128
MAX_NAME = 200
MAX_DESCRIPTION = 4000

Role = Literal["agent", "manager"]


@dataclass(frozen=True, slots=True)
class Owner:
    """The Kubernetes object that owns a tenant: a `Hotel` resource, by its metadata.uid."""

    uid: str
    namespace: str
    name: str

    @property
    def label(self) -> str:
        """`namespace/name`, as kubectl names it."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SenderSpec:
    """A WhatsApp number routed to the hotel, with the Twilio account that owns it.
    `auth_token` is a secret: never log it."""

    number: str
    account_sid: str
    auth_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    email: str
    name: str
    role: Role = "agent"


@dataclass(frozen=True, slots=True)
class AssistantSpec:
    """The assistant's settings; a None field is left as the hotel's managers set it."""

    enabled: bool | None = None
    model: str | None = None
    monthly_budget_usd: float | None = None
    context_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class HotelSpec:
    """A hotel as it should be: its record and settings (its numbers, agents and knowledge are
    applied step by step, each with its own outcome)."""

    chain_slug: str
    chain_name: str
    slug: str
    name: str
    description: str = ""
    timezone: str = "UTC"
    languages: tuple[str, ...] = ("en",)
    assistant: AssistantSpec = AssistantSpec()
    suspended: bool = False
    owner: Owner | None = None

    @property
    def default_language(self) -> str:
        return self.languages[0]


def check_slug(slug: str, what: str = "slug") -> str:
    """`slug` if it is a platform name (lowercase letters, digits and hyphens, at most 63);
    raises `InvalidInput` naming `what`."""
    if not SLUG.fullmatch(slug):
        raise InvalidInput(
            f"{what} {slug!r} is not a valid name: 1 to 63 lowercase letters, digits and "
            "hyphens, starting with a letter or digit"
        )
    return slug


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone known here; raises `InvalidInput`."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"timezone {name!r} is not an IANA time zone (e.g. Europe/Lisbon)"
        ) from None
    return name


def check_sender(sender: SenderSpec) -> SenderSpec:
    """`sender` if its number is E.164, its account SID `AC` + 32 hex and its token of a sane
    length; raises `InvalidInput` naming the number (never the token)."""
    if not is_e164(sender.number):
        raise InvalidInput(f"{sender.number!r} is not an E.164 number (e.g. +351210000000)")
    if not ACCOUNT_SID.fullmatch(sender.account_sid):
        raise InvalidInput(f"{sender.number}: the account SID is not AC followed by 32 hex digits")
    if not MIN_AUTH_TOKEN <= len(sender.auth_token.strip()) <= MAX_AUTH_TOKEN:
        raise InvalidInput(
            f"{sender.number}: the auth token has {MIN_AUTH_TOKEN} to {MAX_AUTH_TOKEN} characters"
        )
    return sender


def check_hotel(spec: HotelSpec) -> HotelSpec:
    """`spec` if its names, time zone and languages are valid; raises `InvalidInput` naming the
    first bad field."""
    check_slug(spec.chain_slug, "chain")
    check_slug(spec.slug)
    if not 1 <= len(spec.chain_name.strip()) <= MAX_NAME:
        raise InvalidInput(f"the chain's name has 1 to {MAX_NAME} characters")
    if not 1 <= len(spec.name.strip()) <= MAX_NAME:
        raise InvalidInput(f"the hotel's name has 1 to {MAX_NAME} characters")
    if len(spec.description) > MAX_DESCRIPTION:
        raise InvalidInput(f"the description has at most {MAX_DESCRIPTION} characters")
    check_timezone(spec.timezone)
    if not spec.languages or not all(LANGUAGE.fullmatch(code) for code in spec.languages):
        raise InvalidInput("languages are ISO 639-1 codes (en, pt, …), at least one")
    return spec


def check_agent(agent: AgentSpec) -> AgentSpec:
    """`agent` with its email lowercased if valid; raises `InvalidInput`."""
    email = agent.email.strip().lower()
    if not EMAIL.fullmatch(email) or len(email) > 254:
        raise InvalidInput(f"{agent.email!r} is not an email address")
    if not 1 <= len(agent.name.strip()) <= MAX_NAME:
        raise InvalidInput(f"{email}: the name has 1 to {MAX_NAME} characters")
    if agent.role not in ("agent", "manager"):
        raise InvalidInput(f"{email}: the role is agent or manager")
    return AgentSpec(email, agent.name.strip(), agent.role)


def agent_secret_name(hotel_name: str, email: str) -> str:
    """The Kubernetes Secret holding the one-time password of agent `email` of the `Hotel`
    resource `hotel_name`: a DNS name of at most 253 characters, the same for the same pair."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:10]
    return f"{hotel_name[:200]}-agent-{digest}"
