"""Real processes: `hotelchat serve` and `hotelchat worker` as production runs them, on the test
session's PostgreSQL and Redis, talking to the loopback emulators."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from hotelchat.adapters.embedded import free_port
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import OPENAI_KEY, Backing


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop. Returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, like an OOM kill or a node loss."""
        self.popen.kill()
        self.popen.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


Spawn = Callable[..., Process]


@pytest.fixture(autouse=True)
def _start_empty(empty_database: None) -> None:
    """Every test starts with empty tables and an empty Redis."""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start `hotelchat <args>` with `env`; every process is stopped after the test and its
    output shown if the test failed."""
    started: list[Process] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> Process:
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "hotelchat", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        print(f"--- {process.name} ({process.log}) ---\n{process.output()[-4000:]}")


@pytest.fixture
def web_port() -> int:
    return free_port()


@pytest.fixture
def process_env(
    backing: Backing,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
    web_port: int,
    tmp_path: Path,
) -> dict[str, str]:
    """Environment for `serve` and `worker` processes of one deployment under test."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=backing.app_dsn,
        DATABASE_ADMIN_URL=backing.admin_dsn,
        REDIS_URL=backing.redis_url,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{web_port}",
        PORT=str(web_port),
        TWILIO_API_BASE_URL=twilio_emulator.url,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=openai_emulator.url + "/v1",
        SECRET_KEY="e" * 40,
        LOG_FORMAT="json",
        HOTELCHAT_STATE_DIR=str(tmp_path / "state"),
    )
    return env


async def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `check()` (sync or async) every 0.2 s until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


async def wait_ready(base_url: str, timeout: float = 30.0) -> None:
    async def ready() -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(base_url + "/readyz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    await wait_until(ready, timeout, f"{base_url}/readyz")
