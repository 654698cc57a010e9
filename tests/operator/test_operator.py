"""The operator (`hotelchat operator`, a real process) against the Kubernetes emulation and real
PostgreSQL and Redis: a Hotel applied with kubectl becomes a serving tenant within 10 s; each
part of its spec, its Secret and its ConfigMap are followed; drift is corrected; bad input says
what to fix and recovers; suspension, both deletion policies, a SIGKILL mid-reconcile and two
operators at once all end in the state the spec asks for."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from hotelchat.bootstrap import Container
from hotelchat.domain.errors import NotFound
from hotelchat.domain.tenants import agent_secret_name
from tests.conftest import CIPHER, Tenant
from tests.helpers import receive
from tests.operator.kube import HOTELS, SECRETS, KubeEmulation
from tests.operator.operator_run import (
    ACCOUNT_SID,
    CHAIN,
    CHAIN_NAME,
    HOTEL,
    NUMBER,
    PUBLIC_URL,
    READY_SECONDS,
    RESYNC_SECONDS,
    TOKEN,
    Operators,
    arrange_chain,
    condition,
    delete_hotel,
    operators,
    reason_of,
    sample,
    wait_reason,
    write_manifest,
)

__all__ = ["operators"]  # the fixture, used by name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_database")]

READY = "True/Reconciled"


async def apply(kube: KubeEmulation, tmp_path: Path, hotel: dict[str, Any]) -> None:
    """`kubectl apply -f` of `hotel`, as a chain's IT team would."""
    manifest = write_manifest(tmp_path / f"{hotel['metadata']['name']}.yaml", hotel)
    done = kube.kubectl("apply", "-f", str(manifest))
    assert done.returncode == 0, done.stderr


async def one(conn: asyncpg.Connection, query: str, *args: object) -> asyncpg.Record:
    row = await conn.fetchrow(query, *args)
    assert row is not None, query
    return row


def secret_text(kube: KubeEmulation, namespace: str, name: str, key: str) -> str:
    secret = kube.get(SECRETS, namespace, name)
    assert secret is not None, f"no Secret {namespace}/{name}"
    return base64.b64decode(secret["data"][key]).decode()


def events(kube: KubeEmulation, name: str = HOTEL) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in kube.events(CHAIN, about=name)]


async def get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(url) as response,
    ):
        return response.status, await response.text()


def tenant_of(hotel_id: int) -> Tenant:
    return Tenant(hotel_id, HOTEL, NUMBER, ACCOUNT_SID, TOKEN)


# --- apply ------------------------------------------------------------------------------------


async def test_a_hotel_applied_with_kubectl_serves_within_ten_seconds(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operator = operators.start()
    started = time.monotonic()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY, timeout=READY_SECONDS + 5)
    took = time.monotonic() - started
    assert took < READY_SECONDS, f"ready after {took:.1f} s"

    hotel = await one(
        admin,
        """SELECT h.id, h.name, h.timezone, h.languages, h.default_language, h.ai_model,
                  h.monthly_budget_usd::float AS budget, h.context_token_budget, h.suspended,
                  h.resource_uid, c.slug AS chain, c.name AS chain_name
           FROM hotels h JOIN chains c ON c.id = h.chain_id WHERE h.slug = $1""",
        HOTEL,
    )
    resource = kube.get(HOTELS, CHAIN, HOTEL)
    assert resource is not None
    assert dict(hotel) | {"id": 0} == {
        "id": 0,
        "name": "Lisbon Riverside",
        "timezone": "Europe/Lisbon",
        "languages": ["en", "pt"],
        "default_language": "en",
        "ai_model": "gpt-4o-mini",
        "budget": 200.0,
        "context_token_budget": 3000,
        "suspended": False,
        "resource_uid": resource["metadata"]["uid"],
        "chain": CHAIN,
        "chain_name": CHAIN_NAME,
    }
    sender = await one(admin, "SELECT * FROM whatsapp_senders")
    assert (sender["phone_number"], sender["account_sid"]) == (NUMBER, ACCOUNT_SID)
    assert sender["auth_token"] is None
    assert CIPHER.decrypt(sender["auth_token_ciphertext"]) == TOKEN
    titles = await admin.fetchval("SELECT array_agg(title ORDER BY title) FROM kb_entries")
    assert titles == ["Breakfast", "Parking"]
    agent = await one(
        admin,
        """SELECT a.email, a.display_name, a.password_hash, a.password_change_required, ah.role
           FROM agents a JOIN agent_hotels ah ON ah.agent_id = a.id""",
    )
    assert (agent["email"], agent["role"], agent["password_change_required"]) == (
        "ana@example.com",
        "manager",
        True,
    )
    secret_name = agent_secret_name(HOTEL, "ana@example.com")
    password = secret_text(kube, CHAIN, secret_name, "password")
    PasswordHasher().verify(agent["password_hash"], password)
    owner = kube.get(SECRETS, CHAIN, secret_name)
    assert owner is not None
    assert owner["metadata"]["ownerReferences"][0]["uid"] == resource["metadata"]["uid"]

    status = kube.status(CHAIN, HOTEL)
    assert {k: status[k] for k in ("hotelId", "slug", "webhookUrl", "senders", "agentSecrets")} == {
        "hotelId": hotel["id"],
        "slug": HOTEL,
        "senders": 1,
        "agentSecrets": [secret_name],
        "webhookUrl": PUBLIC_URL + "/webhooks/twilio/whatsapp",
    }
    assert status["observedGeneration"] == resource["metadata"]["generation"]
    kinds = {c["type"]: f"{c['status']}/{c['reason']}" for c in status["conditions"]}
    assert kinds == {
        "Provisioned": "True/HotelProvisioned",
        "SendersRouted": "True/NumbersRouted",
        "KnowledgeBaseSynced": "True/Synced",
        "AgentsSynced": "True/Synced",
        "Ready": READY,
    }
    await kube.wait_for(
        lambda: (
            {("Normal", "Reconciled"), ("Normal", "Ready")}
            <= {(kind, reason) for kind, reason, _ in events(kube)}
        ),
        timeout=5,
        what="the Reconciled and Ready Events",
    )
    listed = kube.kubectl("get", "hotels", "-n", CHAIN)
    assert listed.returncode == 0, listed.stderr
    assert "True" in listed.stdout
    assert PUBLIC_URL + "/webhooks/twilio/whatsapp" in listed.stdout

    health = await get(f"http://127.0.0.1:{operator.env['OPERATOR_HEALTH_PORT']}/healthz")
    assert health[0] == 200
    code, exposition = await get(
        f"http://127.0.0.1:{operator.env['OPERATOR_METRICS_PORT']}/metrics"
    )
    assert code == 200
    assert 'hotelchat_operator_reconciles_total{outcome="ready",trigger="create"}' in exposition
    assert 'hotelchat_operator_hotels{ready="true"} 1.0' in exposition
    assert TOKEN not in operators.output(), "a token reached the operator's log"
    assert password not in operators.output(), "a password reached the operator's log"


async def test_a_second_apply_of_the_same_spec_changes_nothing(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    await apply(kube, tmp_path, sample())
    ready = await wait_reason(kube, "Ready", READY)
    before = await admin.fetchval("SELECT knowledge_version FROM hotels")
    await asyncio.sleep(RESYNC_SECONDS * 2.5)  # the timer reconciles at least twice meanwhile
    assert reason_of(kube, "Ready") == READY
    assert condition(kube, "Ready")["lastTransitionTime"] == ready["lastTransitionTime"]
    assert await admin.fetchval("SELECT knowledge_version FROM hotels") == before
    assert [r for _, r, _ in events(kube)].count("Reconciled") == 1


# --- changes ----------------------------------------------------------------------------------


async def test_each_part_of_the_spec_is_followed(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    kube.create_secret(CHAIN, "porto-twilio", {"token": "porto-token-" + "2" * 20})
    operators.start()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    generation = kube.status(CHAIN, HOTEL)["observedGeneration"]
    changed = sample(
        displayName="Riverside Lisboa",
        description="By the river.",
        timezone="Atlantic/Madeira",
        languages=["pt", "en", "es"],
        assistant={
            "enabled": False,
            "model": "gpt-4.1-mini",
            "monthlyBudgetUSD": 75.5,
            "contextTokens": 1200,
        },
        whatsapp={
            "senders": [
                {
                    "number": "+351220000000",
                    "accountSid": ACCOUNT_SID,
                    "authTokenSecretRef": {"name": "porto-twilio", "key": "token"},
                },
            ]
        },
        agents=[
            {"email": "ana@example.com", "name": "Ana Sousa", "role": "agent"},
            {"email": "rui@example.com", "name": "Rui"},
        ],
    )
    await apply(kube, tmp_path, changed)
    await kube.wait_for(
        lambda: (
            kube.status(CHAIN, HOTEL).get("observedGeneration", 0) > generation
            and reason_of(kube, "Ready") == READY
        ),
        timeout=READY_SECONDS,
        what="the change to be reconciled",
    )
    hotel = await one(
        admin,
        """SELECT name, description, timezone, languages, default_language, ai_enabled,
                  ai_model, monthly_budget_usd::float AS budget, context_token_budget
           FROM hotels""",
    )
    assert dict(hotel) == {
        "name": "Riverside Lisboa",
        "description": "By the river.",
        "timezone": "Atlantic/Madeira",
        "languages": ["pt", "en", "es"],
        "default_language": "pt",
        "ai_enabled": False,
        "ai_model": "gpt-4.1-mini",
        "budget": 75.5,
        "context_token_budget": 1200,
    }
    numbers = await admin.fetch(
        "SELECT phone_number, retired_at IS NOT NULL AS retired FROM whatsapp_senders"
        " ORDER BY phone_number"
    )
    assert [tuple(n) for n in numbers] == [(NUMBER, True), ("+351220000000", False)]
    agents = await admin.fetch(
        """SELECT a.email, a.display_name, ah.role FROM agents a
           JOIN agent_hotels ah ON ah.agent_id = a.id ORDER BY a.email"""
    )
    assert [tuple(a) for a in agents] == [
        ("ana@example.com", "Ana Sousa", "agent"),
        ("rui@example.com", "Rui", "agent"),
    ]
    assert sorted(kube.status(CHAIN, HOTEL)["agentSecrets"]) == sorted(
        agent_secret_name(HOTEL, e) for e in ("ana@example.com", "rui@example.com")
    )
    # An agent taken out of the spec leaves the hotel (the login stays, for the chain).
    await apply(kube, tmp_path, {**changed, "spec": {**changed["spec"], "agents": []}})
    await kube.wait_for(
        lambda: (
            reason_of(kube, "AgentsSynced") == "True/Synced"
            and not kube.status(CHAIN, HOTEL).get("agentSecrets")
        ),
        timeout=READY_SECONDS,
        what="the agents to be removed",
    )
    assert await admin.fetchval("SELECT count(*) FROM agent_hotels") == 0


async def test_a_rotated_token_and_an_edited_knowledge_base_are_picked_up(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    rotated = "rotated-token-" + "9" * 18
    kube.patch(
        SECRETS,
        CHAIN,
        "lisbon-twilio",
        {"data": {"authToken": base64.b64encode(rotated.encode()).decode()}},
    )
    kube.patch(
        "configmaps",
        CHAIN,
        "lisbon-kb",
        {
            "data": {
                "knowledge.md": "## Parking\nParking is free for guests.\n\n## Spa\nOpen 9 to 21.\n"
            }
        },
    )

    async def stored_token() -> str:
        return CIPHER.decrypt(
            await admin.fetchval("SELECT auth_token_ciphertext FROM whatsapp_senders")
        )

    started = time.monotonic()
    while await stored_token() != rotated:
        assert time.monotonic() - started < 30, "the rotated token was not picked up in 30 s"
        await asyncio.sleep(0.2)
    while await admin.fetchval(
        "SELECT array_agg(title || ': ' || body ORDER BY title) FROM kb_entries"
    ) != ["Parking: Parking is free for guests.", "Spa: Open 9 to 21."]:
        assert time.monotonic() - started < 30, "the edited knowledge base was not picked up"
        await asyncio.sleep(0.2)
    await kube.wait_for(
        lambda: any(
            "knowledge base: 1 added, 1 changed, 1 removed" in m
            for _, r, m in events(kube)
            if r == "Reconciled"
        ),
        timeout=5,
        what="an Event saying what changed",
    )
    assert rotated not in operators.output()


async def test_drift_behind_the_operators_back_is_corrected(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    await admin.execute("UPDATE hotels SET name = 'Renamed by hand', suspended = true")
    await admin.execute("UPDATE whatsapp_senders SET retired_at = now()")
    await admin.execute("DELETE FROM kb_entries WHERE title = 'Parking'")
    await admin.execute("UPDATE agent_hotels SET role = 'agent'")

    async def corrected() -> bool:
        row = await one(
            admin,
            """SELECT h.name, h.suspended,
                      (SELECT count(*) FROM whatsapp_senders WHERE retired_at IS NULL) AS routed,
                      (SELECT count(*) FROM kb_entries) AS entries,
                      (SELECT role FROM agent_hotels) AS role
               FROM hotels h""",
        )
        return tuple(row) == ("Lisbon Riverside", False, 1, 2, "manager")

    started = time.monotonic()
    while not await corrected():
        assert time.monotonic() - started < RESYNC_SECONDS * 5, "drift was not corrected"
        await asyncio.sleep(0.2)


# --- bad input --------------------------------------------------------------------------------


async def warned(kube: KubeEmulation, reason: str, name: str = HOTEL) -> str:
    """The message of the Warning Event with `reason` about Hotel `name` (waits for it)."""
    found = await kube.wait_for(
        lambda: [m for kind, r, m in events(kube, name) if kind == "Warning" and r == reason],
        timeout=5,
        what=f"a Warning Event {reason}",
    )
    return found[0]


async def test_a_missing_secret_says_so_and_recovers_once_it_exists(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube, secret=False)
    operators.start()
    await apply(kube, tmp_path, sample())
    routed = await wait_reason(kube, "SendersRouted", "False/SecretNotFound")
    assert routed["message"] == f"Secret {CHAIN}/lisbon-twilio does not exist"
    assert reason_of(kube, "Ready") == "False/SecretNotFound"
    assert reason_of(kube, "KnowledgeBaseSynced") == "True/Synced", "the rest is applied"
    assert "lisbon-twilio does not exist" in await warned(kube, "SecretNotFound")
    assert await admin.fetchval("SELECT count(*) FROM whatsapp_senders") == 0
    kube.create_secret(CHAIN, "lisbon-twilio", {"wrongKey": TOKEN})
    await wait_reason(kube, "SendersRouted", "False/SecretKeyNotFound", timeout=30)
    kube.patch(
        SECRETS,
        CHAIN,
        "lisbon-twilio",
        {"data": {"authToken": base64.b64encode(TOKEN.encode()).decode()}},
    )
    await wait_reason(kube, "Ready", READY, timeout=30)
    assert await admin.fetchval("SELECT count(*) FROM whatsapp_senders") == 1


async def test_a_secret_of_another_namespace_is_out_of_reach(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)  # lisbon-twilio exists in sunrise-hotels only
    arrange_chain(kube, "moonlight-hotels", secret=False)
    operators.start()
    intruder = sample(slug="moonlight-lisbon", agents=[])
    intruder["metadata"]["namespace"] = "moonlight-hotels"
    await apply(kube, tmp_path, intruder)
    refused = await wait_reason(
        kube, "SendersRouted", "False/SecretNotFound", namespace="moonlight-hotels"
    )
    assert refused["message"] == "Secret moonlight-hotels/lisbon-twilio does not exist"
    assert await admin.fetchval("SELECT count(*) FROM whatsapp_senders") == 0


async def test_a_slug_of_another_namespaces_hotel_is_refused_until_it_is_free(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    arrange_chain(kube, "moonlight-hotels")
    operators.start()
    first = sample(deletionPolicy="Delete")
    await apply(kube, tmp_path, first)
    await wait_reason(kube, "Ready", READY)
    rival = sample(whatsapp={"senders": []}, agents=[])
    rival["metadata"]["namespace"] = "moonlight-hotels"
    (tmp_path / "rival").mkdir()
    await apply(kube, tmp_path / "rival", rival)
    refused = await wait_reason(
        kube, "Provisioned", "False/SlugTaken", namespace="moonlight-hotels"
    )
    assert "taken by a hotel of another chain" in refused["message"]
    assert reason_of(kube, "SendersRouted", namespace="moonlight-hotels") == "Unknown/NotReconciled"
    assert await admin.fetchval("SELECT count(*) FROM hotels") == 1
    await delete_hotel(kube)
    await wait_reason(kube, "Ready", READY, namespace="moonlight-hotels", timeout=60)
    assert (
        await admin.fetchval("SELECT c.slug FROM hotels h JOIN chains c ON c.id = h.chain_id")
        == "moonlight-hotels"
    )


async def test_a_number_routed_to_another_hotel_is_refused_until_it_is_free(
    kube: KubeEmulation, operators: Operators, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    porto = sample(agents=[], knowledgeBase=None)
    porto["metadata"]["name"] = "porto"
    del porto["spec"]["knowledgeBase"]
    await apply(kube, tmp_path, porto)
    refused = await wait_reason(kube, "SendersRouted", "False/NumberTaken", name="porto")
    assert f"{NUMBER} is routed to hotel '{HOTEL}'" in refused["message"]
    assert "routed to hotel" in await warned(kube, "NumberTaken", "porto")
    await apply(kube, tmp_path, sample(whatsapp={"senders": []}))
    await wait_reason(kube, "Ready", READY, name="porto", timeout=60)
    assert reason_of(kube, "SendersRouted") == "True/NoNumbers"


async def test_a_malformed_or_missing_knowledge_base_is_left_as_it_was(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    kube.patch(
        "configmaps",
        CHAIN,
        "lisbon-kb",
        {"data": {"knowledge.md": "## Parking\n\n## Breakfast\nFrom 7:00.\n"}},
    )
    malformed = await wait_reason(
        kube, "KnowledgeBaseSynced", "False/MalformedKnowledgeBase", timeout=30
    )
    assert "line 1: body: 1 to 8000 characters" in malformed["message"]
    assert await admin.fetchval("SELECT count(*) FROM kb_entries") == 2, "nothing lost"
    await apply(
        kube, tmp_path, sample(knowledgeBase={"configMapRef": {"name": "nowhere", "key": "kb.md"}})
    )
    await wait_reason(kube, "KnowledgeBaseSynced", "False/ConfigMapNotFound")
    await apply(
        kube,
        tmp_path,
        sample(knowledgeBase={"configMapRef": {"name": "lisbon-kb", "key": "other.md"}}),
    )
    await wait_reason(kube, "KnowledgeBaseSynced", "False/ConfigMapKeyNotFound")
    kube.patch("configmaps", CHAIN, "lisbon-kb", {"data": {"other.md": "## Spa\nOpen 9 to 21.\n"}})
    await wait_reason(kube, "Ready", READY, timeout=30)
    assert await admin.fetchval("SELECT array_agg(title) FROM kb_entries") == ["Spa"]


async def test_an_agent_of_another_chain_and_an_unknown_time_zone(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    await admin.execute("INSERT INTO chains (slug, name) VALUES ('other', 'Other')")
    await admin.execute(
        "INSERT INTO agents (chain_id, email, display_name, password_hash) "
        "SELECT id, 'ana@example.com', 'Ana', 'x' FROM chains WHERE slug = 'other'"
    )
    await apply(kube, tmp_path, sample())
    taken = await wait_reason(kube, "AgentsSynced", "False/EmailTaken")
    assert "ana@example.com is an agent of another chain" in taken["message"]
    await apply(kube, tmp_path, sample(timezone="Europe/Atlantis"))
    invalid = await wait_reason(kube, "Ready", "False/InvalidSpec")
    assert "'Europe/Atlantis' is not an IANA time zone" in invalid["message"]
    assert reason_of(kube, "Provisioned") == "Unknown/NotReconciled"
    assert "not an IANA time zone" in await warned(kube, "InvalidSpec")
    await apply(kube, tmp_path, sample(agents=[{"email": "rui@example.com", "name": "Rui"}]))
    await wait_reason(kube, "Ready", READY)


async def test_malformed_hotels_are_refused_at_admission(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    bad_sender = {
        "number": "351210000000",
        "accountSid": ACCOUNT_SID,
        "authTokenSecretRef": {"name": "lisbon-twilio", "key": "authToken"},
    }
    cases = {
        "number": sample(whatsapp={"senders": [bad_sender]}),
        "sid": sample(
            whatsapp={"senders": [{**bad_sender, "number": NUMBER, "accountSid": "AC123"}]}
        ),
        "policy": sample(deletionPolicy="Forget"),
        "role": sample(agents=[{"email": "a@b.c", "name": "A", "role": "owner"}]),
        "budget": sample(assistant={"monthlyBudgetUSD": -1}),
        "unknown": sample(colour="blue"),
        "long name": sample(displayName="x" * 201),
        "long description": sample(description="x" * 4001),
        "too many numbers": sample(
            whatsapp={
                "senders": [{**bad_sender, "number": f"+3512100000{n:02}"} for n in range(21)]
            }
        ),
        "too many agents": sample(agents=[{"email": f"a{n}@b.c", "name": "A"} for n in range(501)]),
        "context": sample(assistant={"contextTokens": 100_001}),
    }
    for case, hotel in cases.items():
        manifest = write_manifest(tmp_path / f"{case}.yaml", hotel)
        refused = kube.kubectl("apply", "-f", str(manifest))
        assert refused.returncode != 0, case
        assert (
            f'The Hotel "{HOTEL}" is invalid' in refused.stderr or "unknown field" in refused.stderr
        ), (case, refused.stderr)
    assert kube.get(HOTELS, CHAIN, HOTEL) is None
    await asyncio.sleep(1)
    assert await admin.fetchval("SELECT count(*) FROM hotels") == 0


# --- suspension and deletion ------------------------------------------------------------------


async def ready_hotel(
    kube: KubeEmulation,
    operators: Operators,
    admin: asyncpg.Connection,
    tmp_path: Path,
    **spec: Any,
) -> int:
    arrange_chain(kube)
    operators.start()
    await apply(kube, tmp_path, sample(**spec))
    await wait_reason(kube, "Ready", READY)
    hotel_id: int = await admin.fetchval("SELECT id FROM hotels")
    return hotel_id


async def test_a_suspended_hotel_answers_as_an_unknown_number_until_resumed(
    kube: KubeEmulation,
    operators: Operators,
    admin: asyncpg.Connection,
    tmp_path: Path,
    container: Container,
) -> None:
    hotel_id = await ready_hotel(kube, operators, admin, tmp_path)
    guest = tenant_of(hotel_id)
    await receive(container, guest, "Is there parking?")  # the route is now remembered
    await apply(kube, tmp_path, sample(suspended=True))
    suspended = await wait_reason(kube, "Ready", "False/Suspended")
    assert "spec.suspended is true" in suspended["message"]
    with pytest.raises(NotFound):
        await receive(container, guest, "Hello?", guest="+15550002222")
    assert await admin.fetchval("SELECT count(*) FROM messages") == 1, "nothing stored"
    await apply(kube, tmp_path, sample(suspended=False))
    await wait_reason(kube, "Ready", READY)
    assert await receive(container, guest, "Back?", guest="+15550002222")


async def test_deleting_with_retain_keeps_every_row_and_stops_routing(
    kube: KubeEmulation,
    operators: Operators,
    admin: asyncpg.Connection,
    tmp_path: Path,
    container: Container,
) -> None:
    hotel_id = await ready_hotel(kube, operators, admin, tmp_path)
    await receive(container, tenant_of(hotel_id), "Is there parking?")
    await delete_hotel(kube)
    with pytest.raises(NotFound):
        await receive(container, tenant_of(hotel_id), "Anyone?", guest="+15550003333")
    counts = await one(
        admin,
        """SELECT (SELECT count(*) FROM hotels) AS hotels, (SELECT count(*) FROM messages) AS m,
                  (SELECT count(*) FROM kb_entries) AS kb, (SELECT count(*) FROM guests) AS g,
                  (SELECT suspended FROM hotels) AS suspended,
                  (SELECT resource_uid FROM hotels) AS owner,
                  (SELECT count(*) FROM whatsapp_senders WHERE retired_at IS NULL) AS routed""",
    )
    assert dict(counts) == {
        "hotels": 1,
        "m": 1,
        "kb": 2,
        "g": 1,
        "suspended": True,
        "owner": None,
        "routed": 0,
    }
    released = [m for _, r, m in events(kube) if r == "Released"]
    assert released, events(kube)
    assert "deletionPolicy Retain" in released[0]
    # Applied again, the kept hotel is adopted and serves again.
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    assert await admin.fetchval("SELECT id FROM hotels") == hotel_id
    assert await receive(container, tenant_of(hotel_id), "Back?", guest="+15550003333")


async def test_deleting_with_delete_erases_the_tenant_and_says_how_much(
    kube: KubeEmulation,
    operators: Operators,
    admin: asyncpg.Connection,
    tmp_path: Path,
    container: Container,
    tenant: Tenant,
) -> None:
    hotel_id = await ready_hotel(kube, operators, admin, tmp_path, deletionPolicy="Delete")
    await receive(container, tenant_of(hotel_id), "Is there parking?")
    await receive(container, tenant, "Another hotel's guest")
    await delete_hotel(kube)
    for table, left in (("messages", 1), ("guests", 1), ("kb_entries", 3), ("hotels", 1)):
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == left, table
    assert await admin.fetchval("SELECT slug FROM hotels") == tenant.slug
    message = await kube.wait_for(
        lambda: [m for _, r, m in events(kube) if r == "Released"], timeout=5, what="Released"
    )
    assert "deletionPolicy Delete: erased hotel lisbon-riverside" in message[0]
    assert "1 messages" in message[0]
    assert "2 knowledge entries" in message[0]


# --- crashes and duplicates -------------------------------------------------------------------


async def test_killed_mid_reconcile_it_converges_with_no_duplicate(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    staff = [{"email": f"agent{n:02}@example.com", "name": f"Agent {n}"} for n in range(20)]
    first = operators.start()
    await apply(kube, tmp_path, sample(agents=staff))
    started = time.monotonic()
    while not await admin.fetchval("SELECT count(*) FROM agents"):
        assert time.monotonic() - started < READY_SECONDS, "the first agent never came"
        await asyncio.sleep(0.02)
    assert first.kill() == -9
    made = await admin.fetchval("SELECT count(*) FROM agents")
    assert made < len(staff), "killed after the reconcile: nothing was interrupted"
    operators.start()
    await wait_reason(kube, "Ready", READY, timeout=30)
    counts = await one(
        admin,
        """SELECT (SELECT count(*) FROM hotels) AS hotels, (SELECT count(*) FROM chains) AS c,
                  (SELECT count(*) FROM whatsapp_senders) AS s,
                  (SELECT count(*) FROM agents) AS agents,
                  (SELECT count(*) FROM agent_hotels) AS memberships,
                  (SELECT count(*) FROM kb_entries) AS kb""",
    )
    assert dict(counts) == {"hotels": 1, "c": 1, "s": 1, "agents": 20, "memberships": 20, "kb": 2}
    hasher = PasswordHasher()
    for agent in await admin.fetch("SELECT email, password_hash FROM agents"):
        password = secret_text(kube, CHAIN, agent_secret_name(HOTEL, agent["email"]), "password")
        try:
            hasher.verify(agent["password_hash"], password)
        except VerifyMismatchError:
            pytest.fail(f"{agent['email']}'s one-time password is not the one in its Secret")
    assert len(kube.list_objects(SECRETS, CHAIN, labels=f"hotelchat.io/hotel={HOTEL}")) == 20


async def test_two_operators_started_by_mistake_do_not_fight(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    arrange_chain(kube)
    operators.start()
    operators.start()
    await apply(kube, tmp_path, sample())
    await wait_reason(kube, "Ready", READY)
    await asyncio.sleep(RESYNC_SECONDS * 2)
    assert reason_of(kube, "Ready") == READY
    counts = await one(
        admin,
        """SELECT (SELECT count(*) FROM hotels) AS h, (SELECT count(*) FROM agents) AS a,
                  (SELECT count(*) FROM whatsapp_senders) AS s,
                  (SELECT count(*) FROM kb_entries) AS kb""",
    )
    assert dict(counts) == {"h": 1, "a": 1, "s": 1, "kb": 2}
    assert len(kube.list_objects(SECRETS, CHAIN, labels=f"hotelchat.io/hotel={HOTEL}")) == 1


# --- the shipped examples ---------------------------------------------------------------------


async def test_the_demo_chain_in_k8s_examples_applies_and_serves(
    kube: KubeEmulation, operators: Operators, admin: asyncpg.Connection
) -> None:
    from hotelchat.services import demo

    examples = Path(__file__).parents[2] / "k8s" / "examples"
    operators.start()
    applied = kube.kubectl("apply", "-k", str(examples))
    assert applied.returncode == 0, applied.stderr
    for hotel in demo.HOTELS:
        await wait_reason(kube, "Ready", READY, name=hotel.slug, namespace=demo.CHAIN_SLUG)
    rows = await admin.fetch(
        """SELECT h.slug, s.phone_number, (SELECT count(*) FROM kb_entries e
                                           WHERE e.hotel_id = h.id) AS entries
           FROM hotels h JOIN whatsapp_senders s ON s.hotel_id = h.id ORDER BY h.slug"""
    )
    assert [(r["slug"], r["phone_number"], r["entries"]) for r in rows] == sorted(
        (h.slug, h.whatsapp_number, len(h.knowledge)) for h in demo.HOTELS
    )
