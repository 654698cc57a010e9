"""The chart's tests: renderings of charts/hotelchat and the k8s/ manifests, checked offline.
Only tests/chart/test_processes.py needs PostgreSQL and Redis (the session's `backing`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.chart.launch import HostLauncher, Launcher, Running


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts a rendered container's argv and environment: on this machine, from .venv. The
    image's runner (tests/image/runner.py) is meant to replace it here. Every process is stopped
    after the test, and its output shown."""
    host = HostLauncher(tmp_path)
    started: list[Running] = []

    def launch(name: str, argv: Sequence[str], env: Mapping[str, str]) -> Running:
        process = host(name, argv, env)
        started.append(process)
        return process

    yield launch
    for process in started:
        process.stop()
    for process in started:
        print(f"--- {process.name} ---\n{process.output()[-4000:]}")
