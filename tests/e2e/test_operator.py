"""A hotel made from a `Hotel` resource answers a guest, in real processes: `kubectl apply`
through the emulated Kubernetes API, the operator reconciles it, then a signed WhatsApp webhook
to its number goes through `hotelchat serve` and is answered by `hotelchat worker` through the
Twilio emulator (the path of issue 2); its new agent logs in with the one-time password from the
Secret the operator made. Once the Hotel is deleted, the webhook is refused as for an unknown
number."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from hotelchat.adapters.twilio import sign
from hotelchat.domain.tenants import agent_secret_name
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import Tenant
from tests.e2e.processes import Spawn, wait_ready, wait_until
from tests.helpers import GUEST, INBOUND_PATH, inbound, post_webhook
from tests.operator.kube import SECRETS, KubeEmulation
from tests.operator.operator_run import (
    ACCOUNT_SID,
    CHAIN,
    HOTEL,
    NUMBER,
    TOKEN,
    Operators,
    arrange_chain,
    delete_hotel,
    operators,
    sample,
    wait_reason,
    write_manifest,
)

__all__ = ["operators"]  # the fixture, used by name

pytestmark = pytest.mark.slow


async def post_status(base_url: str, tenant: Tenant, text: str) -> int:
    """The status of a signed inbound webhook for `text` to `tenant`'s number."""
    params = inbound(tenant, text, guest="+15550009999")
    headers = {"X-Twilio-Signature": sign(tenant.auth_token, base_url + INBOUND_PATH, params)}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(base_url + INBOUND_PATH, data=params, headers=headers) as response,
    ):
        return response.status


async def log_in(base_url: str, email: str, password: str) -> str:
    """Log in through the form; returns where the server sends the browser next."""
    jar = aiohttp.CookieJar(unsafe=True)  # the server is at an IP address
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), cookie_jar=jar
    ) as http:
        async with http.get(base_url + "/login") as page:
            found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
            assert found is not None
        form = {"email": email, "password": password, "csrf_token": found.group(1)}
        async with http.post(base_url + "/login", data=form, allow_redirects=True) as done:
            return str(done.url.path)


async def test_a_hotel_applied_as_a_resource_answers_a_guest_until_deleted(
    kube: KubeEmulation,
    operators: Operators,
    spawn: Spawn,
    process_env: dict[str, str],
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    tmp_path: Path,
) -> None:
    arrange_chain(kube)
    operators.start()
    applied = kube.kubectl("apply", "-f", str(write_manifest(tmp_path / "h.yaml", sample())))
    assert applied.returncode == 0, applied.stderr
    await wait_reason(kube, "Ready", "True/Reconciled")

    base = process_env["PUBLIC_BASE_URL"]
    env = {k: v for k, v in process_env.items() if k != "OPENAI_API_KEY"}  # the knowledge base
    spawn("web", ["serve"], env)
    spawn("worker", ["worker"], env)
    await wait_ready(base)
    hotel_id = await admin.fetchval("SELECT id FROM hotels")
    guest_hotel = Tenant(hotel_id, HOTEL, NUMBER, ACCOUNT_SID, TOKEN)

    async def embedded() -> bool:
        return bool(
            await admin.fetchval("SELECT bool_and(embedded_at IS NOT NULL) FROM kb_entries")
        )

    await wait_until(embedded, 60, "the worker to embed the ConfigMap's knowledge base")
    await post_webhook(base, guest_hotel, "How much is parking?")
    await wait_until(twilio_emulator.sent, 60, "the reply at Twilio")
    (sent,) = twilio_emulator.sent()
    assert sent.to == f"whatsapp:{GUEST}"
    assert "EUR 18" in sent.body

    secret = kube.get(SECRETS, CHAIN, agent_secret_name(HOTEL, "ana@example.com"))
    assert secret is not None
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert await log_in(base, "ana@example.com", password) == "/account/password"

    await delete_hotel(kube)
    assert await post_status(base, guest_hotel, "Are you there?") == 404
    assert len(twilio_emulator.sent()) == 1
