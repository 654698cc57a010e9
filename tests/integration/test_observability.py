"""Logs and metrics of the web app and the jobs, in-process: no body, phone number, token or
secret reaches a log line on any path; metric labels stay bounded; /metrics can be protected;
tracing is off (and costs nothing) unless configured."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from quart import Quart
from quart.typing import TestClientProtocol as Client

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.emulators import openai_api
from hotelchat.emulators import twilio_api as twilio_emulation
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.entrypoints.web.app import create_app
from hotelchat.entrypoints.web.context import EXTENSION
from hotelchat.logs import json_handler
from tests.conftest import AGENT_PASSWORD, OPENAI_KEY, Tenant, create_agent, run_jobs
from tests.helpers import INBOUND_PATH, STATUS_PATH, csrf_of, inbound, login, signed

GUEST = "+15557654321"
STRANGER = "+15559876543"
PROFILE = "Zed Markerson"
BODIES = ["BODYMARKER-one call me at +15557654321", "REPLYMARKER-two", "AGENTMARKER-three",
          "NOTEMARKER-four", "WEBMARKER-five", "FAILMARKER-six"]  # fmt: skip


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the test, as our JSON handler writes it."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[tuple[Quart, Client]]:
    quart = create_app(settings)
    async with quart.test_app() as test_app:
        yield quart, test_app.test_client()


async def test_no_body_phone_number_token_or_secret_reaches_the_logs(
    app: tuple[Quart, Client],
    captured: io.StringIO,
    settings: Settings,
    tenant: Tenant,
    admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator,
    twilio_emulator: TwilioEmulator,
) -> None:
    quart, client = app
    container: Container = quart.extensions[EXTENSION]

    # Inbound WhatsApp: a good one, a forged one, one to a number nobody uses.
    params = inbound(tenant, BODIES[0], guest=GUEST) | {"ProfileName": PROFILE}
    assert (
        await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    ).status_code == 200
    forged = inbound(tenant, BODIES[0], guest=GUEST)
    await client.post(INBOUND_PATH, form=forged, headers={"X-Twilio-Signature": "A" * 28})
    unknown = inbound(tenant, BODIES[0], guest=GUEST) | {"To": f"whatsapp:{STRANGER}"}
    await client.post(INBOUND_PATH, form=unknown, headers=signed(tenant, unknown))

    # The reply job, once answered, once with the model failing and Twilio refusing.
    openai_emulator.answer_next(BODIES[1])
    await run_jobs(settings)
    params = inbound(tenant, BODIES[5], guest="+15551112222")
    await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    openai_emulator.fail_next(openai_api.SERVER_ERROR, times=3)
    twilio_emulator.fail_next(twilio_emulation.Fault(status=400, code=63016))
    await run_jobs(settings)

    # A status callback.
    sid = twilio_emulator.sent()[0].sid
    callback = {
        "AccountSid": tenant.account_sid,
        "From": f"whatsapp:{tenant.phone_number}",
        "To": f"whatsapp:{GUEST}",
        "MessageSid": sid,
        "MessageStatus": "delivered",
    }
    await client.post(STATUS_PATH, form=callback, headers=signed(tenant, callback, STATUS_PATH))

    # The dashboard: a failed and a good login, a reply, a note.
    await create_agent(admin, "ana@a.test", [tenant.slug])
    assert await login(client, "ana@a.test", "WRONGPASSWORD-marker") == 401
    assert await login(client, "ana@a.test") == 303
    csrf = await csrf_of(client)
    rows = await container.deps.inbox.conversations(tenant.hotel_id, states=None, limit=5)
    conversation = next(r for r in rows if r.guest_phone == GUEST)
    for kind, text in (("messages", BODIES[2]), ("notes", BODIES[3])):
        response = await client.post(
            f"/api/conversations/{conversation.id}/{kind}",
            json={"body": text, "client_id": str(uuid.uuid4())},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code == 201
    await run_jobs(settings)

    # The web chat.
    started = await (await client.post(f"/chat/{tenant.slug}/session", json={})).get_json()
    response = await client.post(
        f"/chat/{tenant.slug}/messages",
        json={"body": BODIES[4], "client_id": str(uuid.uuid4())},
        headers={"Authorization": f"Bearer {started['token']}"},
    )
    assert response.status_code == 201
    await run_jobs(settings)

    logs = captured.getvalue()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    events = {line.get("event") for line in lines}
    # The capture saw the paths it was meant to (so the absence below means something).
    assert {"inbound.stored", "webhook.bad_signature", "webhook.unknown_number", "reply.stored",
            "reply.model_failed", "send.failed", "status.updated", "auth.login_failed",
            "auth.logged_in", "agent.replied", "webchat.started"} <= events, events  # fmt: skip
    forbidden = [
        *(body.split(" ")[0] for body in BODIES),
        GUEST, GUEST[1:], GUEST[2:], STRANGER, STRANGER[1:], PROFILE, "Zed",
        tenant.auth_token, OPENAI_KEY, AGENT_PASSWORD, "WRONGPASSWORD", csrf,
        started["token"], settings.require_secret_key(),
    ]  # fmt: skip
    leaked = [value for value in forbidden if value in logs]
    assert leaked == [], f"leaked into the logs: {leaked}"
    assert re.search(r"\+1555\d{7}", logs) is None


async def test_metrics_are_bounded_and_can_be_protected(
    settings: Settings, tenant: Tenant, app: tuple[Quart, Client]
) -> None:
    _quart, client = app
    for conversation_id in (1, 22, 333, 4444):
        await client.get(f"/api/conversations/{conversation_id}")
    await client.get("/no/such/page/12345")
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert 'route="/api/conversations/<int:conversation_id>"' in text
    assert 'route="unmatched"' in text
    label_values = {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert not [v for v in label_values if "4444" in v or "12345" in v]

    protected = create_app(settings.model_copy(update={"metrics_token": SecretStr("m" * 24)}))
    async with protected.test_app() as test_app:
        guarded = test_app.test_client()
        assert (await guarded.get("/metrics")).status_code == 401
        wrong = await guarded.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await guarded.get("/metrics", headers={"Authorization": "Bearer " + "m" * 24})
        assert right.status_code == 200
        assert b"hotelchat_http_requests_total" in await right.get_data()


def test_tracing_is_off_without_an_endpoint_and_loads_nothing() -> None:
    """Off by default at no cost: no SDK imported, the API's no-op tracer in place."""
    program = (
        "import sys, json\n"
        "from hotelchat.observability import tracing\n"
        "from opentelemetry import trace\n"
        "on = tracing.configure('x')\n"
        "with tracing.span('y') as s: recording = s.is_recording()\n"
        "print(json.dumps({'on': on, 'sdk': 'opentelemetry.sdk' in sys.modules,\n"
        "  'provider': type(trace.get_tracer_provider()).__name__, 'recording': recording}))\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    assert json.loads(result.stdout) == {
        "on": False, "sdk": False, "provider": "ProxyTracerProvider", "recording": False
    }  # fmt: skip
