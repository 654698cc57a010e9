"""Real processes: `hotelchat serve` and `hotelchat worker` as production runs them, on the test
session's PostgreSQL and Redis, talking to the loopback emulators."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotelchat.adapters.embedded import free_port
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from tests.conftest import ENCRYPTION_KEY, OPENAI_KEY, Backing
from tests.e2e.processes import Process, Spawn


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
        ENCRYPTION_KEYS=ENCRYPTION_KEY,
        LOG_FORMAT="json",
        HOTELCHAT_STATE_DIR=str(tmp_path / "state"),
    )
    return env
