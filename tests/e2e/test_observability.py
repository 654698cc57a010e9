"""Observability of real processes: one trace from the Twilio webhook to the Twilio send, exported
over OTLP to a collector on loopback; and a real Prometheus server scraping a web process with two
Hypercorn workers and a worker, finding the key series, summed correctly across processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from hotelchat.adapters.embedded import free_port
from hotelchat.emulators.server import ServerThread
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import Tenant
from tests.e2e.processes import Spawn, wait_ready, wait_until
from tests.helpers import post_webhook
from tests.otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.slow


async def test_one_trace_from_the_webhook_to_the_send(
    spawn: Spawn,
    process_env: dict[str, str],
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
) -> None:
    receiver = OTLPReceiver()
    server = ServerThread(receiver.app).start()
    env = process_env | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": server.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    try:
        spawn("web", ["serve"], env)
        spawn("worker", ["worker"], env)
        await wait_ready(env["PUBLIC_BASE_URL"])
        await post_webhook(env["PUBLIC_BASE_URL"], tenant, "Is there parking?")
        await wait_until(twilio_emulator.sent, 30, "the reply")

        def names() -> set[str]:
            return {span.name for span in receiver.spans()}

        wanted = {
            "POST /webhooks/twilio/whatsapp",
            "job reply_to_inbound",
            "chat gpt-4o-mini",
            "twilio messages.create",
            "socketio emit message",
        }
        await wait_until(lambda: wanted <= names(), 30, f"spans {wanted}")
        spans = receiver.spans()
        webhook = next(s for s in spans if s.name == "POST /webhooks/twilio/whatsapp")
        in_trace = [s for s in spans if s.trace_id == webhook.trace_id]
        assert wanted <= {s.name for s in in_trace}, "everything is one trace"
        assert {s.service for s in in_trace} >= {"hotelchat-web", "hotelchat-worker"}
        job = next(s for s in in_trace if s.name == "job reply_to_inbound")
        by_id = {s.span_id: s for s in in_trace}
        # The job's parent is a span of the web process (the context travelled in the job).
        assert by_id[job.parent_span_id].service == "hotelchat-web"
        # Database and Redis calls are spans of the same trace too.
        assert any(s.service == "hotelchat-worker" and s.name.startswith(("SELECT", "UPDATE",
                   "INSERT", "WITH", "BEGIN")) for s in in_trace)  # fmt: skip
    finally:
        server.stop()


async def query(prometheus: str, expression: str) -> list[dict[str, object]]:
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expression)}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(url) as response,
    ):
        body = await response.json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_key_series(
    spawn: Spawn,
    process_env: dict[str, str],
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    tmp_path: Path,
) -> None:
    worker_port, prometheus_port = free_port(), free_port()
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    env = process_env | {"WORKER_METRICS_PORT": str(worker_port), "METRICS_TOKEN": "t" * 24}
    base = env["PUBLIC_BASE_URL"]
    web_target = urllib.parse.urlsplit(base).netloc
    spawn("web", ["serve"], env | {"WEB_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    spawn("worker", ["worker"], env)
    await wait_ready(base)
    for n in range(6):
        await post_webhook(base, tenant, f"Is there parking? ({n})")
    await wait_until(lambda: len(twilio_emulator.sent()) >= 1, 30, "a reply")

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "hotelchat-web", "authorization": {"credentials": "t" * 24},
             "static_configs": [{"targets": [web_target]}]},
            {"job_name": "hotelchat-worker",
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    with (tmp_path / "prometheus.log").open("wb") as log:
        prometheus = subprocess.Popen(  # noqa: ASYNC220 - starts at once, waited for below
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        await wait_ready(url, path="/-/ready")
        series = {
            'up{job="hotelchat-web"} == 1': None,
            'up{job="hotelchat-worker"} == 1': None,
            'hotelchat_http_requests_total{route="/webhooks/twilio/whatsapp",status="200"}': None,
            "hotelchat_webhook_ingest_duration_seconds_count": None,
            'hotelchat_jobs_total{job_name="reply_to_inbound",outcome="success"}': None,
            "hotelchat_job_queue_wait_seconds_count": None,
            'hotelchat_ai_time_to_first_token_seconds_count{hotel="hotel-a"}': None,
            'hotelchat_ai_tokens_total{kind="completion"}': None,
            'hotelchat_ai_replies_total{responder="openai"}': None,
            'hotelchat_twilio_sends_total{outcome="sent"}': None,
            "hotelchat_db_pool_connections_in_use": None,
            "hotelchat_db_pool_max_connections": None,
            "hotelchat_queue_depth": None,
            "hotelchat_handoff_oldest_unanswered_seconds": None,
        }
        deadline = time.monotonic() + 60
        missing = list(series)
        while missing and time.monotonic() < deadline:
            missing = [expr for expr in series if not await query(url, expr)]
            if missing:
                await asyncio.sleep(0.5)
        assert not missing, f"series Prometheus never saw: {missing}"
        # Six webhooks went to two Hypercorn worker processes: the scrape sums them.
        inbound = await query(url, 'sum(hotelchat_inbound_messages_total{hotel="hotel-a"})')
        assert inbound[0]["value"][1] == "6"  # type: ignore[index]
        # No label carries a phone number or a message id.
        everything = await query(url, '{__name__=~"hotelchat_.+"}')
        labels = {k for s in everything for k in s["metric"]}  # type: ignore[attr-defined]
        assert labels <= {"__name__", "instance", "job", "route", "method", "status", "kind",
                          "hotel", "channel", "namespace", "event", "queue", "job_name",
                          "outcome", "model", "error_class", "responder", "provider",
                          "error_code", "reason", "le"}, labels  # fmt: skip
    finally:
        prometheus.terminate()
        prometheus.wait(10)
