"""The worker process's loop through a Redis restart: arq's loop stops on a connection it cannot
open, and `run_worker` starts it again, so the worker keeps answering guests once Redis is back.
Its liveness probe stays green through the outage (a restarted pod would not bring Redis back)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr

from hotelchat.adapters.embedded import free_port, start_redis
from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.entrypoints.worker import run_worker
from tests.conftest import ENCRYPTION_KEY, Backing, Tenant
from tests.helpers import receive

Build = Callable[..., Awaitable[Container]]


async def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


async def probe(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_the_worker_rides_out_a_redis_restart(
    settings: Settings,
    build_container: Build,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    admin: asyncpg.Connection,
) -> None:
    redis = start_redis(tmp_path / "redis")
    port = free_port()
    worker_settings = settings.model_copy(
        update={
            "redis_url": SecretStr(redis.url),
            "worker_metrics_port": port,
            "worker_metrics_host": "127.0.0.1",
            "sweeper_min_age_seconds": 1,
        }
    )
    worker = asyncio.create_task(run_worker(worker_settings))
    try:
        web = await build_container(redis_url=redis.url)
        first = await receive(web, tenant, "Is there parking?")
        assert first
        await wait_for(lambda: len(twilio_emulator.sent()) == 1, 30, "the first reply")
        # The outage comes between jobs: the knowledge base's embedding job is done too.
        deadline = time.monotonic() + 30
        while await admin.fetchval("SELECT count(*) FROM kb_entries WHERE embedded_at IS NULL"):
            assert time.monotonic() < deadline, "the embedding job did not finish"
            await asyncio.sleep(0.2)
        assert await probe(port, "/healthz") == (200, "ok\n")
        status, exposition = await probe(port, "/metrics")
        assert status == 200
        assert 'hotelchat_jobs_total{job_name="reply_to_inbound",outcome="success"}' in exposition
        redis.stop()
        await wait_for(
            lambda: any("worker.redis_unavailable" in str(r.msg) for r in caplog.records),
            30,
            "the worker to meet the outage",
        )
        assert not worker.done(), "the worker must not exit on a Redis outage"
        assert (await probe(port, "/healthz"))[0] == 200, "alive while waiting for Redis"
        redis = start_redis(tmp_path / "redis", port=redis.port)
        # A guest writes once Redis is back: the restarted loop answers.
        await receive(web, tenant, "And breakfast?", guest="+15557770000")
        await wait_for(lambda: len(twilio_emulator.sent()) == 2, 60, "the reply after the outage")
        assert not worker.done()
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(worker, 40)
        redis.stop()


def test_a_worker_waiting_out_an_outage_stops_on_sigterm(backing: Backing) -> None:
    """In a pod being stopped while Redis is away, the worker exits at once, not at its SIGKILL."""
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": backing.app_dsn,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "WORKER_METRICS_PORT": "0",
        "LOG_FORMAT": "json",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "hotelchat", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        seen = b""
        assert worker.stdout is not None
        while b"worker.redis_unavailable" not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            seen += worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
