"""One reconcile of a `Hotel` resource: read what it references from the cluster, apply it
through `services.tenants` and `services.knowledge` (the same path as the CLI), and say how each
part went as a condition.

The cluster is read first and written last; a database connection is held only while a
provisioning step runs, never while waiting on the Kubernetes API for anything but a new
agent's one-time-password Secret. Every step is idempotent, so a reconcile cut short anywhere is
simply run again.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from hotelchat.adapters.kubernetes import MissingReference
from hotelchat.bootstrap import OperatorContainer
from hotelchat.domain.errors import Conflict, HotelChatError, InvalidInput
from hotelchat.domain.tenants import SenderSpec
from hotelchat.entrypoints.operator.resource import (
    AGENTS_SYNCED,
    KNOWLEDGE_SYNCED,
    PROVISIONED,
    SENDERS_ROUTED,
    Condition,
    HotelResource,
    Outcome,
    not_reconciled,
    summary,
)
from hotelchat.services import knowledge, tenants

log = structlog.get_logger(__name__)


def _reason(exc: HotelChatError, default: str) -> str:
    if isinstance(exc, MissingReference):
        return exc.reason
    return {
        "slug_taken": "SlugTaken",
        "number_taken": "NumberTaken",
        "email_taken": "EmailTaken",
    }.get(exc.code, default)


def _problems(problems: dict[str, HotelChatError], default: str) -> tuple[str, str]:
    """The reason of the first problem and a message naming every one."""
    first = next(iter(problems.values()))
    message = "; ".join(exc.message for exc in problems.values())
    return _reason(first, default), message


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the resource references, read from the cluster."""

    chain_name: str
    tokens: dict[str, str]  # auth token by number
    token_problems: dict[str, HotelChatError]
    knowledge: bytes | None
    knowledge_problem: MissingReference | None


async def read_inputs(platform: OperatorContainer, resource: HotelResource) -> Inputs:
    """The chain's name, the senders' tokens and the knowledge file. Raises `Unavailable`."""
    cluster, namespace = platform.cluster, resource.namespace
    chain_name = await cluster.chain_name(namespace)
    tokens: dict[str, str] = {}
    token_problems: dict[str, HotelChatError] = {}
    for sender in resource.senders:
        try:
            tokens[sender.number] = await cluster.secret_value(
                namespace, sender.token.name, sender.token.key
            )
        except MissingReference as exc:
            token_problems[sender.number] = exc
    content, problem = None, None
    if resource.knowledge is not None:
        try:
            content = await cluster.config_map_value(
                namespace, resource.knowledge.name, resource.knowledge.key
            )
        except MissingReference as exc:
            problem = exc
    return Inputs(chain_name, tokens, token_problems, content, problem)


async def reconcile(platform: OperatorContainer, resource: HotelResource) -> Outcome:
    """Apply `resource`; returns the conditions of each part, `Ready` last. Raises `Unavailable`
    when PostgreSQL, Redis or the Kubernetes API does not answer (the caller retries)."""
    outcome = Outcome()
    inputs = await read_inputs(platform, resource)
    async with platform.tenants.provisioning() as store:
        try:
            applied = await tenants.apply_hotel(store, resource.hotel_spec(inputs.chain_name))
        except (InvalidInput, Conflict) as exc:
            reason = _reason(exc, "InvalidSpec")
            outcome.conditions = [Condition(PROVISIONED, "False", reason, exc.message)]
            outcome.conditions += not_reconciled(
                (SENDERS_ROUTED, KNOWLEDGE_SYNCED, AGENTS_SYNCED),
                "waiting for the hotel to be provisioned",
            )
            outcome.conditions.append(summary(outcome.conditions, suspended=resource.suspended))
            return outcome
        hotel_id = outcome.hotel_id = applied.hotel_id
        if applied.created:
            outcome.changes.append(f"created hotel {resource.slug}")
        elif applied.changed:
            outcome.changes.append("updated " + ", ".join(applied.changed))
        outcome.conditions.append(
            Condition(
                PROVISIONED, "True", "HotelProvisioned", f"hotel {resource.slug} (id {hotel_id})"
            )
        )
        wanted = [
            SenderSpec(s.number, s.account_sid, inputs.tokens[s.number])
            for s in resource.senders
            if s.number in inputs.tokens
        ]
        routed = await tenants.apply_senders(
            store, hotel_id, wanted, unreadable=list(inputs.token_problems)
        )
    outcome.senders = len(routed.routed)
    outcome.changes += [f"routed {n}" for n in routed.changed]
    outcome.changes += [f"retired {n}" for n in routed.retired]
    outcome.conditions.append(_senders_condition(resource, routed, inputs))
    outcome.conditions.append(await _sync_knowledge(platform, resource, hotel_id, inputs, outcome))
    outcome.conditions.append(await _sync_agents(platform, resource, hotel_id, outcome))
    outcome.conditions.append(summary(outcome.conditions, suspended=resource.suspended))
    return outcome


def _senders_condition(
    resource: HotelResource, routed: tenants.SendersApplied, inputs: Inputs
) -> Condition:
    problems = {**inputs.token_problems, **routed.problems}
    if problems:
        reason, message = _problems(problems, "InvalidSender")
        return Condition(SENDERS_ROUTED, "False", reason, message)
    if not resource.senders:
        return Condition(
            SENDERS_ROUTED,
            "True",
            "NoNumbers",
            "no WhatsApp numbers: guests reach the hotel on its web chat only",
        )
    numbers = ", ".join(routed.routed)
    return Condition(SENDERS_ROUTED, "True", "NumbersRouted", f"routed to the hotel: {numbers}")


async def _sync_knowledge(
    platform: OperatorContainer,
    resource: HotelResource,
    hotel_id: int,
    inputs: Inputs,
    outcome: Outcome,
) -> Condition:
    ref = resource.knowledge
    if ref is None:
        return Condition(
            KNOWLEDGE_SYNCED,
            "True",
            "NotManaged",
            "spec.knowledgeBase is not set: the hotel's managers edit the knowledge base in the "
            "dashboard",
        )
    if inputs.knowledge_problem is not None:
        problem = inputs.knowledge_problem
        return Condition(KNOWLEDGE_SYNCED, "False", problem.reason, problem.message)
    assert inputs.knowledge is not None
    try:
        synced = await knowledge.sync_file(
            platform.knowledge, platform.jobs, hotel_id, ref.key, inputs.knowledge
        )
    except InvalidInput as exc:
        return Condition(
            KNOWLEDGE_SYNCED,
            "False",
            "MalformedKnowledgeBase",
            f"ConfigMap {resource.namespace}/{ref.name} key {ref.key}: {exc.message}; the "
            "knowledge base is left as it was",
        )
    if synced.changed:
        outcome.changes.append(
            f"knowledge base: {synced.added} added, {synced.updated} changed, "
            f"{synced.removed} removed"
        )
    return Condition(
        KNOWLEDGE_SYNCED,
        "True",
        "Synced",
        f"{synced.entries} entries from ConfigMap {resource.namespace}/{ref.name}; the worker "
        "computes their vectors",
    )


async def _sync_agents(
    platform: OperatorContainer, resource: HotelResource, hotel_id: int, outcome: Outcome
) -> Condition:
    secrets: dict[str, str] = {}

    async def issue_password(email: str) -> str:
        name, password = await platform.cluster.agent_password(
            resource.namespace, resource.name, resource.uid, email
        )
        secrets[email] = name
        return password

    try:
        async with platform.tenants.provisioning() as store:
            applied = await tenants.apply_agents(
                store, hotel_id, resource.namespace, resource.agents, issue_password
            )
    except MissingReference as exc:
        return Condition(AGENTS_SYNCED, "False", exc.reason, exc.message)
    outcome.agent_secrets = sorted(secrets.values())
    outcome.changes += [f"created agent {email}" for email in applied.created]
    outcome.changes += [f"added agent {email}" for email in applied.joined]
    outcome.changes += [f"removed agent {email}" for email in applied.removed]
    if applied.problems:
        reason, message = _problems(dict(applied.problems), "InvalidAgent")
        return Condition(AGENTS_SYNCED, "False", reason, message)
    count = len(resource.agents)
    message = f"{count} agent{'s' if count != 1 else ''}"
    if secrets:
        message += "; one-time passwords in Secrets " + ", ".join(sorted(secrets.values()))
    return Condition(AGENTS_SYNCED, "True", "Synced", message)


async def release(platform: OperatorContainer, resource: HotelResource) -> str:
    """The resource is being deleted: apply its deletionPolicy to the hotel it owns. Returns
    what was done, for the Event. Raises `Unavailable`."""
    async with platform.tenants.provisioning() as store:
        record = await store.hotel_record(resource.slug)
        if record is None or record.owner_uid != resource.uid:
            return "no hotel of this resource to release"
        if resource.deletion_policy == "Delete":
            counts = await tenants.erase_hotel(store, record.id)
            erased = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())
            return f"deletionPolicy Delete: erased hotel {resource.slug}: {erased}"
        retired = await tenants.release_hotel(store, record.id)
    return (
        f"deletionPolicy Retain: hotel {resource.slug} kept with all its data, suspended, "
        f"{retired} number(s) no longer routed; applying the Hotel again brings it back"
    )
