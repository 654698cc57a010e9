"""Provision tenants: the one path by which chains, hotels, their WhatsApp numbers and their
agents come to exist and change, whether an operator types `hotelchat hotels create` or the
Kubernetes operator reconciles a `Hotel` resource.

Each step is idempotent: applying the same desired state twice changes nothing the second time,
so a step interrupted anywhere (a SIGKILL, a lost connection) is simply applied again. A step
raises the domain's errors (`InvalidInput`, `Conflict` with a `code`, `NotFound`,
`Unavailable`); the caller decides what an error means for the rest (the operator turns each
into a condition on the resource).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from hotelchat.domain.errors import Conflict, HotelChatError, InvalidInput
from hotelchat.domain.tenants import (
    AgentSpec,
    HotelSpec,
    SenderSpec,
    check_agent,
    check_hotel,
    check_sender,
)
from hotelchat.services.ports import StoredMembership, StoredSender, TenantHotel, TenantStore

log = structlog.get_logger(__name__)


# --- hotels -----------------------------------------------------------------------------------


async def create_hotel(
    store: TenantStore,
    *,
    chain_slug: str,
    chain_name: str | None,
    slug: str,
    name: str,
    description: str = "",
    timezone: str = "UTC",
    language: str = "en",
) -> int:
    """Create hotel `slug` in chain `chain_slug` (created too when `chain_name` is given); the
    CLI's `hotels create`. Raises `InvalidInput`, `NotFound` (no such chain), `Conflict` (the
    slug is taken)."""
    spec = HotelSpec(
        chain_slug=chain_slug,
        chain_name=chain_name or chain_slug,
        slug=slug,
        name=name,
        description=description,
        timezone=timezone,
        languages=(language,),
    )
    check_hotel(spec)
    if chain_name:
        await store.ensure_chain(chain_slug, chain_name)
    return await store.create_hotel(
        chain_slug=chain_slug,
        slug=slug,
        name=name,
        description=description,
        timezone=timezone,
        default_language=language,
        languages=(language,),
    )


@dataclass(frozen=True, slots=True)
class AppliedHotel:
    hotel_id: int
    created: bool
    changed: tuple[str, ...]  # the fields that changed; empty when it already matched


def owner_conflict(record: TenantHotel, spec: HotelSpec) -> str | None:
    """Why `spec` may not take hotel `record` over, or None when it may: a hotel of another
    chain, or one owned by another resource. An unowned hotel of the same chain (made with the
    CLI, or kept after its resource was deleted with deletionPolicy Retain) is adopted."""
    if record.chain_slug != spec.chain_slug:
        return f"the slug {spec.slug!r} is taken by a hotel of another chain"
    owner = spec.owner
    if owner is not None and record.owner_uid not in (None, owner.uid):
        return f"the slug {spec.slug!r} is taken by Hotel {record.owner_name}"
    return None


async def apply_hotel(store: TenantStore, spec: HotelSpec) -> AppliedHotel:
    """Make chain `spec.chain_slug` and hotel `spec.slug` exist as `spec` says (the chain
    renamed to `spec.chain_name` when the spec has an owner, i.e. comes from a resource).

    Raises `InvalidInput` (a bad field), `Conflict` with code `slug_taken` (another chain's or
    another resource's hotel), `Unavailable`."""
    check_hotel(spec)
    await store.ensure_chain(spec.chain_slug, spec.chain_name, rename=spec.owner is not None)
    record = await store.hotel_record(spec.slug)
    created = False
    if record is None:
        try:
            hotel_id = await store.create_hotel(
                chain_slug=spec.chain_slug,
                slug=spec.slug,
                name=spec.name,
                description=spec.description,
                timezone=spec.timezone,
                default_language=spec.default_language,
                languages=spec.languages,
                owner=spec.owner,
            )
        except Conflict:
            record = await store.hotel_record(spec.slug)  # created meanwhile
            if record is None:
                raise
        else:
            created = True
            log.info("tenants.hotel_created", hotel_id=hotel_id, slug=spec.slug)
    if record is not None:
        problem = owner_conflict(record, spec)
        if problem is not None:
            raise Conflict(problem, code="slug_taken")
        hotel_id = record.id
        if spec.owner is not None and record.owner_uid != spec.owner.uid:
            await store.set_owner(hotel_id, spec.owner)
            log.info("tenants.hotel_adopted", hotel_id=hotel_id, owner=spec.owner.label)
    changed = await store.update_hotel(hotel_id, spec)
    if changed and not created:
        log.info("tenants.hotel_updated", hotel_id=hotel_id, fields=changed)
    return AppliedHotel(hotel_id, created, tuple(changed))


async def release_hotel(store: TenantStore, hotel_id: int) -> int:
    """A hotel whose resource is deleted with deletionPolicy Retain: its numbers stop routing
    at once (retired, so another hotel may route them) and it is suspended; every row is kept.
    The hotel no longer has an owner, so applying a resource for it again adopts it. Returns the
    number of senders retired."""
    retired = len((await apply_senders(store, hotel_id, [])).retired)
    await store.set_owner(hotel_id, None)
    await store.update_suspended(hotel_id, suspended=True)
    log.info("tenants.hotel_released", hotel_id=hotel_id, senders_retired=retired)
    return retired


async def erase_hotel(store: TenantStore, hotel_id: int) -> dict[str, int]:
    """Delete every row of the hotel: guests, conversations, messages, knowledge,
    reservations, numbers, memberships and the hotel itself. Returns how many of each."""
    counts = await store.erase_hotel(hotel_id)
    log.info("tenants.hotel_erased", hotel_id=hotel_id, **counts)
    return counts


# --- WhatsApp numbers -------------------------------------------------------------------------


@dataclass
class SendersApplied:
    routed: list[str] = field(default_factory=list)  # numbers routed to the hotel now
    changed: list[str] = field(default_factory=list)  # of those, added or re-keyed this time
    retired: list[str] = field(default_factory=list)
    problems: dict[str, HotelChatError] = field(default_factory=dict)  # by number


async def route_number(store: TenantStore, hotel_id: int, sender: SenderSpec) -> bool:
    """Route `sender.number` to the hotel with its Twilio account and token, unless already so
    (a token stored under an older key is re-encrypted with the newest). Returns whether
    anything was written. Raises `InvalidInput`, `Conflict` (code `number_taken`)."""
    return await _route(store, hotel_id, sender, await store.senders(hotel_id))


async def _route(
    store: TenantStore, hotel_id: int, sender: SenderSpec, stored: Sequence[StoredSender]
) -> bool:
    """`route_number`, given the hotel's numbers as stored."""
    check_sender(sender)
    for found in stored:
        if (
            found.number == sender.number
            and not found.retired
            and found.account_sid == sender.account_sid
            and found.auth_token == sender.auth_token
            and found.token_current
        ):
            return False
    await store.save_sender(hotel_id, sender)
    log.info("tenants.number_routed", hotel_id=hotel_id)
    return True


async def apply_senders(
    store: TenantStore,
    hotel_id: int,
    wanted: Sequence[SenderSpec],
    *,
    unreadable: Sequence[str] = (),
) -> SendersApplied:
    """Route exactly the numbers in `wanted` to the hotel: add or update each, retire the
    hotel's other numbers. Numbers in `unreadable` (their token could not be read) are left as
    they are. A number another hotel routes is reported in `problems`, the others applied."""
    result = SendersApplied()
    before = await store.senders(hotel_id)  # read (and decrypted) once for every number
    for sender in wanted:
        try:
            if await _route(store, hotel_id, sender, before):
                result.changed.append(sender.number)
            result.routed.append(sender.number)
        except (InvalidInput, Conflict) as exc:
            result.problems[sender.number] = exc
    keep = {s.number for s in wanted} | set(unreadable)
    for stored in before:
        if not stored.retired and stored.number not in keep:
            await store.retire_sender(hotel_id, stored.id)
            result.retired.append(stored.number)
            log.info("tenants.number_retired", hotel_id=hotel_id)
    return result


# --- agents -----------------------------------------------------------------------------------


@dataclass
class AgentsApplied:
    created: list[str] = field(default_factory=list)  # emails of agents created
    joined: list[str] = field(default_factory=list)  # existing agents added to the hotel
    removed: list[str] = field(default_factory=list)
    problems: dict[str, HotelChatError] = field(default_factory=dict)  # by email


# Called with a new agent's email; returns the one-time password to create them with (the
# Kubernetes operator keeps it in a Secret before the agent exists, so a crash loses nothing).
IssuePassword = Callable[[str], Awaitable[str]]


async def apply_agents(
    store: TenantStore,
    hotel_id: int,
    chain_slug: str,
    wanted: Sequence[AgentSpec],
    issue_password: IssuePassword,
) -> AgentsApplied:
    """Make the hotel's agents exactly `wanted`, with their names and roles. An agent new to
    the chain is created with the password `issue_password(email)` gives, to be changed at the
    first login; an agent of the chain already is added to the hotel as they are. Agents not
    wanted lose this hotel (and their sessions in it), not their login. An email of another
    chain's agent is reported in `problems`."""
    result = AgentsApplied()
    current = {m.email: m for m in await store.memberships(hotel_id)}
    wanted_emails = set()
    for raw in wanted:
        try:
            agent = check_agent(raw)
            wanted_emails.add(agent.email)
            outcome = await _apply_agent(
                store, hotel_id, chain_slug, agent, current.get(agent.email), issue_password
            )
        except (InvalidInput, Conflict) as exc:
            wanted_emails.add(raw.email.strip().lower())  # a problem is not a removal
            result.problems[raw.email] = exc
        else:
            if outcome == "created":
                result.created.append(agent.email)
            elif outcome == "joined":
                result.joined.append(agent.email)
    for email, member in current.items():
        if email not in wanted_emails:
            await store.remove_membership(member.agent_id, hotel_id)
            result.removed.append(email)
    if result.created or result.joined or result.removed:
        log.info(
            "tenants.agents_applied",
            hotel_id=hotel_id,
            created=len(result.created),
            joined=len(result.joined),
            removed=len(result.removed),
        )
    return result


async def _apply_agent(
    store: TenantStore,
    hotel_id: int,
    chain_slug: str,
    agent: AgentSpec,
    member: StoredMembership | None,
    issue_password: IssuePassword,
) -> Literal["kept", "created", "joined"]:
    if member is not None:
        if member.name != agent.name:
            await store.rename_agent(member.agent_id, agent.name)
        if member.role != agent.role:
            await store.set_membership(member.agent_id, hotel_id, agent.role)
        return "kept"
    existing = await store.agent_chain(agent.email)
    if existing is not None and existing[1] != chain_slug:
        raise Conflict(
            f"{agent.email} is an agent of another chain; agents belong to one chain",
            code="email_taken",
        )
    if existing is None:
        agent_id = await store.create_agent(
            chain_slug=chain_slug,
            email=agent.email,
            name=agent.name,
            password=await issue_password(agent.email),
            change_required=True,
        )
        outcome: Literal["created", "joined"] = "created"
    else:
        agent_id, outcome = existing[0], "joined"
        await store.rename_agent(agent_id, agent.name)
    await store.set_membership(agent_id, hotel_id, agent.role)
    return outcome


async def save_agent(
    store: TenantStore,
    *,
    chain_slug: str,
    email: str,
    name: str,
    password: str,
    hotel_slugs: Sequence[str],
    role: str,
) -> int:
    """Create agent `email` of the chain working in `hotel_slugs`, or update their name,
    password and hotels (the CLI's `agents add`: the password is the one they will use).
    Raises `InvalidInput`, `NotFound` (a chain or hotel), `Conflict` (another chain's email)."""
    agent = check_agent(AgentSpec(email, name, "manager" if role == "manager" else "agent"))
    return await store.add_agent(
        chain_slug=chain_slug,
        email=agent.email,
        display_name=agent.name,
        password=password,
        hotel_slugs=list(hotel_slugs),
        role=agent.role,
    )
