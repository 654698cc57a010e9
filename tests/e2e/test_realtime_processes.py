"""Several web processes behind one address, as in production: Socket.IO events cross processes
through Redis, an agent's reply sent on one process reaches the guest, and a Redis restart in the
middle of a session loses nothing once the client has caught up."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from hotelchat.adapters.embedded import free_port, start_redis
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import PUBLIC_URL, Tenant, create_agent
from tests.e2e.processes import Spawn, wait_ready, wait_until
from tests.helpers import post_webhook
from tests.live import TIMEOUT, login_cookie, socket

pytestmark = pytest.mark.slow
ANNA, BRUNO = "+15551110001", "+15551110002"


async def test_two_web_processes_a_worker_and_a_redis_restart(
    spawn: Spawn,
    process_env: dict[str, str],
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    tmp_path: Path,
) -> None:
    redis = start_redis(tmp_path / "redis")
    port_a, port_b = free_port(), free_port()
    env = process_env | {
        "REDIS_URL": redis.url,
        "PUBLIC_BASE_URL": PUBLIC_URL,
        "SWEEPER_MIN_AGE_SECONDS": "1",
    }
    web_a, web_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    try:
        spawn("web-a", ["serve"], env | {"PORT": str(port_a)})
        spawn("web-b", ["serve"], env | {"PORT": str(port_b)})
        spawn("worker", ["worker"], env)
        await wait_ready(web_a)
        await wait_ready(web_b)
        await create_agent(admin, "ana@a.test", [tenant.slug])
        cookie = await login_cookie(web_a, "ana@a.test")
        headers = {"Cookie": f"hc_session={cookie}"}
        async with socket(web_a, "/agent", cookie=cookie) as (_client, events):
            # A guest message arriving through process B shows on the agent's socket at A.
            await post_webhook(
                web_b, tenant, "Is there parking?", guest=ANNA, signed_for=PUBLIC_URL
            )
            row = await events.wait_for(
                "conversation", lambda c: c["preview"] == "Is there parking?"
            )
            await wait_until(lambda: twilio_emulator.sent(f"whatsapp:{ANNA}"), 30, "the AI's reply")

            # The agent's reply, sent on A, reaches the guest through the worker.
            async with aiohttp.ClientSession(timeout=TIMEOUT, headers=headers) as http:
                page = await (await http.get(f"{web_a}/dashboard")).text()
                csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
                async with http.post(
                    f"{web_a}/api/conversations/{row['id']}/messages",
                    json={
                        "body": "Ana here: your space is reserved.",
                        "client_id": str(uuid.uuid4()),
                    },
                    headers={"X-CSRF-Token": csrf},
                ) as response:
                    assert response.status == 201, await response.text()

            def agent_reply_sent() -> bool:
                return any(m.body.startswith("Ana here") for m in twilio_emulator.sent())

            await wait_until(agent_reply_sent, 30, "the agent's reply at Twilio")

            # Redis restarts while another guest writes (through B).
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT, headers=headers) as http,
                http.get(f"{web_a}/api/conversations") as response,
            ):
                seen = {c["id"]: c for c in (await response.json())["conversations"]}
            redis.stop()
            await post_webhook(
                web_b, tenant, "Are pets allowed?", guest=BRUNO, signed_for=PUBLIC_URL
            )
            redis = start_redis(tmp_path / "redis", port=redis.port)

            # The client catches up through the API: nothing that arrived meanwhile is lost.
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT, headers=headers) as http,
                http.get(f"{web_a}/api/conversations") as response,
            ):
                now = (await response.json())["conversations"]
            new = [c for c in now if c["id"] not in seen]
            assert [c["preview"] for c in new] == ["Are pets allowed?"]
            # The sweeper queues the reply the outage left without a job; the guest gets it.
            await wait_until(
                lambda: twilio_emulator.sent(f"whatsapp:{BRUNO}"), 60, "the late reply"
            )
            # And live events flow again once Redis is back.
            await post_webhook(web_b, tenant, "Thanks!", guest=ANNA, signed_for=PUBLIC_URL)
            await events.wait_for("conversation", lambda c: c["preview"] == "Thanks!", timeout=60)
        assert (
            await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'inbound'") == 3
        )
    finally:
        redis.stop()
