"""The `Hotel` resource (hotelchat.io/v1alpha1) read into what provisioning needs, and its status
conditions: pure functions, tested without a Kubernetes API.

Conditions follow the Kubernetes API conventions
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties):
keyed by `type`, each with `status` ("True", "False", "Unknown"), a CamelCase `reason`, a
`message` that says what to fix, `lastTransitionTime` (changed only when `status` changes) and
`observedGeneration`; `Ready` sums them up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from hotelchat.domain.errors import InvalidInput
from hotelchat.domain.tenants import (
    AgentSpec,
    AssistantSpec,
    HotelSpec,
    Owner,
    agent_secret_name,
    check_hotel,
)

GROUP, VERSION, PLURAL = "hotelchat.io", "v1alpha1", "hotels"
FINALIZER = "hotelchat.io/tenant"

# Condition types, in the order they are applied and shown.
PROVISIONED = "Provisioned"
SENDERS_ROUTED = "SendersRouted"
KNOWLEDGE_SYNCED = "KnowledgeBaseSynced"
AGENTS_SYNCED = "AgentsSynced"
READY = "Ready"
PARTS = (PROVISIONED, SENDERS_ROUTED, KNOWLEDGE_SYNCED, AGENTS_SYNCED)

Status = Literal["True", "False", "Unknown"]
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str

    def __post_init__(self) -> None:
        if not _REASON.fullmatch(self.reason):
            raise ValueError(f"a condition reason is CamelCase, not {self.reason!r}")


@dataclass(frozen=True, slots=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class SenderRef:
    """A sender as the resource names it: its token is in a Secret, read at reconcile time."""

    number: str
    account_sid: str
    token: SecretRef


@dataclass(frozen=True, slots=True)
class HotelResource:
    """What a `Hotel` object asks for."""

    uid: str
    namespace: str
    name: str
    generation: int
    slug: str
    display_name: str
    description: str
    timezone: str
    languages: tuple[str, ...]
    assistant: AssistantSpec
    senders: tuple[SenderRef, ...]
    knowledge: SecretRef | None  # a ConfigMap reference, same shape
    agents: tuple[AgentSpec, ...]
    suspended: bool
    deletion_policy: Literal["Retain", "Delete"]
    deleting: bool = False

    @property
    def owner(self) -> Owner:
        return Owner(self.uid, self.namespace, self.name)

    def hotel_spec(self, chain_name: str) -> HotelSpec:
        """The hotel record this resource asks for, in chain `namespace` named `chain_name`."""
        return HotelSpec(
            chain_slug=self.namespace,
            chain_name=chain_name,
            slug=self.slug,
            name=self.display_name,
            description=self.description,
            timezone=self.timezone,
            languages=self.languages,
            assistant=self.assistant,
            suspended=self.suspended,
            owner=self.owner,
        )


def _str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _ref(value: object, what: str) -> SecretRef:
    if not isinstance(value, Mapping) or not value.get("name") or not value.get("key"):
        raise InvalidInput(f"{what} needs a name and a key")
    return SecretRef(str(value["name"]), str(value["key"]))


def read_hotel(body: Mapping[str, Any]) -> HotelResource:
    """The `Hotel` object `body` (as the API serves it, defaults applied) read into a
    `HotelResource`. The API server's schema has already refused most bad input; what it cannot
    express (a slug from a long metadata.name, an unknown time zone, a chain name) raises
    `InvalidInput` with a message that says what to fix."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    namespace, name = _str(meta.get("namespace")), _str(meta.get("name"))
    slug = _str(spec.get("slug")) or name
    whatsapp = spec.get("whatsapp") or {}
    senders = tuple(
        SenderRef(
            _str(item.get("number")),
            _str(item.get("accountSid")),
            _ref(
                item.get("authTokenSecretRef"), f"sender {item.get('number')}: authTokenSecretRef"
            ),
        )
        for item in whatsapp.get("senders") or []
    )
    knowledge_spec = spec.get("knowledgeBase")
    knowledge = (
        _ref(knowledge_spec.get("configMapRef"), "knowledgeBase.configMapRef")
        if isinstance(knowledge_spec, Mapping)
        else None
    )
    ai = spec.get("assistant") or {}
    budget, context = ai.get("monthlyBudgetUSD"), ai.get("contextTokens")
    assistant = AssistantSpec(
        enabled=ai.get("enabled") if isinstance(ai.get("enabled"), bool) else None,
        model=_str(ai.get("model")) or None,
        monthly_budget_usd=float(budget) if isinstance(budget, int | float) else None,
        context_tokens=int(context) if isinstance(context, int) else None,
    )
    agents = tuple(
        AgentSpec(
            _str(item.get("email")),
            _str(item.get("name")),
            "manager" if item.get("role") == "manager" else "agent",
        )
        for item in spec.get("agents") or []
    )
    policy = spec.get("deletionPolicy")
    resource = HotelResource(
        uid=_str(meta.get("uid")),
        namespace=namespace,
        name=name,
        generation=int(meta.get("generation") or 0),
        slug=slug,
        display_name=_str(spec.get("displayName")).strip(),
        description=_str(spec.get("description")),
        timezone=_str(spec.get("timezone"), "UTC") or "UTC",
        languages=tuple(spec.get("languages") or ("en",)),
        assistant=assistant,
        senders=senders,
        knowledge=knowledge,
        agents=agents,
        suspended=spec.get("suspended") is True,
        deletion_policy="Delete" if policy == "Delete" else "Retain",
        deleting=bool(meta.get("deletionTimestamp")),
    )
    check_hotel(resource.hotel_spec(chain_name=namespace or "-"))
    return resource


def webhook_url(public_url: str) -> str:
    """What to give Twilio as a number's "A message comes in" webhook (HTTP POST)."""
    return public_url.rstrip("/") + "/webhooks/twilio/whatsapp"


def not_reconciled(parts: Sequence[str], why: str) -> list[Condition]:
    """`Unknown` conditions for parts that were not applied this time, saying `why`."""
    return [Condition(part, "Unknown", "NotReconciled", why) for part in parts]


def summary(conditions: Sequence[Condition], *, suspended: bool) -> Condition:
    """The `Ready` condition: True once every part is; else False with the reason and message
    of the first part that is not (suspended hotels are not ready, on purpose)."""
    for condition in conditions:
        if condition.status != "True":
            return Condition(READY, "False", condition.reason, condition.message)
    if suspended:
        return Condition(
            READY,
            "False",
            "Suspended",
            "spec.suspended is true: its numbers answer as unknown ones and the assistant is "
            "silent; set it to false to serve guests again",
        )
    return Condition(READY, "True", "Reconciled", "the hotel is serving guests")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    wanted: Sequence[Condition],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The status' new `conditions` list: `wanted` in order, each keeping its
    `lastTransitionTime` while its `status` is unchanged; conditions of other types (set by
    someone else) are kept after them, untouched."""
    by_type = {c.get("type"): c for c in current or [] if isinstance(c, Mapping)}
    merged: list[dict[str, Any]] = []
    for condition in wanted:
        before = by_type.pop(condition.type, None)
        transition = now
        if before is not None and before.get("status") == condition.status:
            transition = str(before.get("lastTransitionTime") or now)
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message[:32_000],
                "lastTransitionTime": transition,
                "observedGeneration": generation,
            }
        )
    merged.extend(dict(c) for c in by_type.values())
    return merged


def transitions(
    current: Sequence[Mapping[str, Any]] | None, wanted: Sequence[Condition]
) -> list[Condition]:
    """The wanted conditions whose status or reason differ from the current ones: what is worth
    an Event (a timer that finds nothing new posts none)."""
    by_type = {c.get("type"): c for c in current or [] if isinstance(c, Mapping)}
    changed = []
    for condition in wanted:
        before = by_type.get(condition.type)
        if (
            before is None
            or before.get("status") != condition.status
            or before.get("reason") != condition.reason
        ):
            changed.append(condition)
    return changed


@dataclass
class Outcome:
    """What one reconcile found: the conditions, the status fields, and what changed."""

    conditions: list[Condition] = field(default_factory=list)
    hotel_id: int | None = None
    senders: int = 0
    agent_secrets: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # for the Event that says what was done

    @property
    def ready(self) -> Condition:
        return self.conditions[-1]

    def status_fields(
        self, resource: HotelResource, public_url: str, previous: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The status fields besides conditions; `previous` is the current status (the
        one-time-password Secrets it lists stay listed while their agents are in the spec)."""
        still = {agent_secret_name(resource.name, agent.email) for agent in resource.agents}
        earlier = previous.get("agentSecrets") or []
        secrets = {str(n) for n in earlier if str(n) in still} | set(self.agent_secrets)
        fields: dict[str, Any] = {
            "observedGeneration": resource.generation,
            "slug": resource.slug,
            "webhookUrl": webhook_url(public_url),
            "senders": self.senders,
            "agentSecrets": sorted(secrets),
        }
        if self.hotel_id is not None:
            fields["hotelId"] = self.hotel_id
        return fields
