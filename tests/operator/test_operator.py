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
from tests.operator.kube import EVENTS, HOTELS, SECRETS, KubeEmulation
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
        "id": 0, "name": "Lisbon Riverside", "timezone": "Europe/Lisbon",
        "languages": ["en", "pt"], "default_language": "en", "ai_model": "gpt-4o-mini",
        "budget": 200.0, "context_token_budget": 3000, "suspended": False,
        "resource_uid": resource["metadata"]["uid"], "chain": CHAIN, "chain_name": CHAIN_NAME,
    }  # fmt: skip
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
        "ana@example.com", "manager", True,
    )  # fmt: skip
    secret_name = agent_secret_name(HOTEL, "ana@example.com")
    password = secret_text(kube, CHAIN, secret_name, "password")
    PasswordHasher().verify(agent["password_hash"], password)
    owner = kube.get(SECRETS, CHAIN, secret_name)
    assert owner is not None
    assert owner["metadata"]["ownerReferences"][0]["uid"] == resource["metadata"]["uid"]

    status = kube.status(CHAIN, HOTEL)
    assert {k: status[k] for k in ("hotelId", "slug", "webhookUrl", "senders", "agentSecrets")} == {
        "hotelId": hotel["id"], "slug": HOTEL, "senders": 1, "agentSecrets": [secret_name],
        "webhookUrl": PUBLIC_URL + "/webhooks/twilio/whatsapp",
    }  # fmt: skip
    assert status["observedGeneration"] == resource["metadata"]["generation"]
    kinds = {c["type"]: f"{c['status']}/{c['reason']}" for c in status["conditions"]}
    assert kinds == {
        "Provisioned": "True/HotelProvisioned", "SendersRouted": "True/NumbersRouted",
        "KnowledgeBaseSynced": "True/Synced", "AgentsSynced": "True/Synced", "Ready": READY,
    }  # fmt: skip
    reasons = [(kind, reason) for kind, reason, _ in events(kube)]
    assert ("Normal", "Reconciled") in reasons
    assert ("Normal", "Ready") in reasons
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
