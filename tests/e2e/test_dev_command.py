"""The README's first command: `hotelchat dev` brings the demo up from nothing (embedded
PostgreSQL and Redis), `hotelchat simulate` gets the knowledge-base answer back, Ctrl-C stops it
all, and a restart finds the data where it was."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from hotelchat.adapters.embedded import free_port
from tests.e2e.processes import Spawn, wait_ready

pytestmark = pytest.mark.slow


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `hotelchat ARGS`; returns exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotelchat", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def simulate(env: dict[str, str], text: str, guest: str = "+15557654321") -> str:
    status, out, err = await run_cli(
        env, "simulate", "--hotel", "amapola-resort", "--from", guest, text
    )
    assert status == 0, err
    return out.strip()


async def count_messages(dsn: str, slug: str) -> int:
    """Messages of hotel `slug`, counted as the application role (with the tenant set)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            hotel_id = await conn.fetchval("SELECT hotelchat_route_hotel($1)", slug)
            await conn.execute("SELECT set_config('hotelchat.hotel_id', $1, true)", str(hotel_id))
            count: int = await conn.fetchval("SELECT count(*) FROM messages")
            return count
    finally:
        await conn.close()


async def test_dev_brings_the_demo_up_and_simulate_gets_the_answer(
    spawn: Spawn, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env |= {"HOTELCHAT_STATE_DIR": str(tmp_path / "state"), "PORT": str(port)}

    for run, expected in (("first", 4), ("restart", 8)):
        dev = spawn("dev", ["dev"], env)
        await wait_ready(f"http://127.0.0.1:{port}", timeout=120)
        answer = await simulate(env, "Is there parking?")
        assert answer.startswith("Underground parking is available for EUR 18 per day"), answer
        guest = "+15550001111" if run == "first" else "+15550002222"
        handoff = await simulate(env, "Can I bring my horse to the opera?", guest=guest)
        assert "passed your question to our team" in handoff
        runtime = json.loads((tmp_path / "state" / "dev.json").read_text())
        # Two questions and two replies per run: the first run's are still there after a restart.
        assert await count_messages(runtime["database_url"], "amapola-resort") == expected, run
        assert "agent@amapola.example" in dev.output()
        dev.popen.send_signal(signal.SIGINT)
        assert dev.popen.wait(60) == 0, f"{run}: dev did not stop cleanly\n{dev.output()[-3000:]}"
        assert "stopping" in dev.output()
    # A guest whose conversation went to staff gets no automated reply, and simulate says why.
    dev = spawn("dev", ["dev"], env)
    await wait_ready(f"http://127.0.0.1:{port}", timeout=120)
    status, _out, err = await run_cli(
        env, "simulate", "--hotel", "amapola-resort", "--from", "+15550001111", "Hello?"
    )
    assert status == 1
    assert "conversation is with the hotel's staff (needs_human)" in err
    dev.popen.send_signal(signal.SIGINT)
    assert dev.popen.wait(60) == 0
