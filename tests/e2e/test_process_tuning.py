"""Start-up tuning of the real processes: `hotelchat serve` and `hotelchat worker` freeze what
start-up allocated (gc.freeze), so full collections skip it, and make young collections rarer."""

from __future__ import annotations

import functools
import json

import pytest

from hotelchat.entrypoints.process import GEN0_THRESHOLD
from tests.e2e.processes import Process, Spawn, wait_ready, wait_until

pytestmark = pytest.mark.slow


def settled(process: Process) -> dict[str, object] | None:
    for line in process.output().splitlines():
        if '"process.heap_settled"' in line:
            entry: dict[str, object] = json.loads(line)
            return entry
    return None


async def test_web_and_worker_processes_settle_their_heap_after_start_up(
    spawn: Spawn, process_env: dict[str, str]
) -> None:
    web = spawn("web", ["serve"], process_env)
    worker = spawn("worker", ["worker"], process_env)
    await wait_ready(process_env["PUBLIC_BASE_URL"])
    for process in (web, worker):
        await wait_until(functools.partial(settled, process), 30, f"{process.name} settled")
        entry = settled(process)
        assert entry is not None
        # Modules, the app and the container: well over a hundred thousand objects.
        assert isinstance(entry["frozen_objects"], int) and entry["frozen_objects"] > 100_000
        assert entry["gc_threshold"] == [GEN0_THRESHOLD, 10, 10]
    await wait_ready(process_env["PUBLIC_BASE_URL"])  # and still serving
