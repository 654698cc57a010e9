"""The load-test harness's own checks can fail: the exactly-once checker catches a duplicated or
missing reply, the open-loop generator charges a stalled server's delay to the requests that
waited (no coordinated omission), and a report replaces its own section of the Markdown file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from loadtest import harness


def test_exactly_once_holds_when_every_accepted_message_has_one_reply() -> None:
    check = harness.exactly_once(["+1", "+2"], ["+2", "+1"])
    assert check.holds
    assert (check.accepted, check.answered, check.unexpected) == (2, 2, 0)


def test_exactly_once_catches_an_injected_duplicate() -> None:
    check = harness.exactly_once(["+1", "+2"], ["+1", "+2", "+2"])
    assert not check.holds
    assert check.duplicated == {"+2": 2}
    assert check.missing == []


def test_exactly_once_catches_a_missing_reply_and_counts_unexpected_ones() -> None:
    check = harness.exactly_once(["+1", "+2"], ["+1", "+9"])
    assert not check.holds
    assert check.missing == ["+2"]
    assert (check.answered, check.unexpected) == (1, 1)


async def test_open_loop_measures_from_the_due_time() -> None:
    """A server that answers one request at a time, 50 ms each, offered 100/s: the tenth
    request waited for the nine before it, and its latency says so."""
    lock = asyncio.Lock()

    async def serial(_i: int) -> str:
        async with lock:
            await asyncio.sleep(0.05)
        return "ok"

    samples = await harness.open_loop(100, 0.1, serial)
    assert len(samples) == 10
    worst = max(s.latency for s in samples)
    assert worst >= 10 * 0.05 - 0.1 - 0.01  # queued behind nine others, minus its own offset


async def test_open_loop_counts_failures_as_outcomes() -> None:
    async def failing(i: int) -> str:
        if i % 2:
            raise ConnectionResetError
        return "ok"

    samples = await harness.open_loop(200, 0.05, failing)
    stats = harness.summary(samples, 0.05)
    assert stats["sent"] == 10
    assert stats["outcomes"] == {"ok": 5, "ConnectionResetError": 5}
    assert stats["errors"] == 5


def test_a_report_replaces_its_own_section(tmp_path: Path) -> None:
    (tmp_path / "benchmarks.md").write_text("# Benchmarks\n\nHand-written text.\n")
    data = {"machine": harness.machine(), "machine_end": harness.machine(), "x": [1.5]}
    for body in ("first table", "second table"):
        path = harness.write_report("sx", "SX", "cmd", body, data, docs=tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "Hand-written text." in text
    assert "second table" in text and "first table" not in text
    assert text.count("<!-- loadtest:sx -->") == 1
    assert json.loads(path.read_text())["x"] == [1.5]


def test_a_sweep_plot_is_a_png(tmp_path: Path) -> None:
    step = {"offered": 10.0, "p50_ms": 1.0, "p99_ms": 2.0, "throughput": 10.0, "errors": 0}
    harness.plot_sweep(tmp_path / "p.png", "t", {"a": [step], "b": [step | {"p99_ms": 3.0}]})
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 50) == 51.0
    assert harness.percentile(values, 99) == 100.0


def test_the_openai_emulator_command_refuses_a_model_time_that_cannot_be() -> None:
    from click.testing import CliRunner

    from hotelchat.entrypoints.cli import main

    for option, value in (("--tokens-per-second", "0"), ("--time-to-first-token", "-1")):
        result = CliRunner().invoke(main, ["emulator", "openai", option, value])
        assert result.exit_code == 2, result.output
        assert option in result.output


def _step(offered: float, p99_ms: float, errors: int = 0) -> dict[str, object]:
    return {"offered": offered, "p99_ms": p99_ms, "errors": errors}


def test_s1_ceiling_is_the_highest_rate_held_without_errors() -> None:
    from loadtest.s1_socketio import ceiling

    steps = [_step(500, 20), _step(1000, 60), _step(2000, 99, errors=1), _step(3000, 150)]
    assert ceiling(steps) == 1000
    assert ceiling([_step(500, 100)]) is None  # p99 must be under the limit, not at it


def test_s1_verdict_gives_ratios_to_the_bare_server_of_the_same_client_count() -> None:
    from loadtest.s1_socketio import AGENT, BARE, GUEST, verdict

    series = {
        f"{BARE}, 100 clients": [_step(1000, 10), _step(2000, 20), _step(4000, 80)],
        f"{AGENT}, 100 clients": [_step(1000, 30), _step(2000, 50), _step(4000, 900)],
        f"{GUEST}, 100 clients": [_step(1000, 400), _step(2000, 500), _step(4000, 900)],
    }
    agent, guest = verdict(series, [100])
    assert (agent["ceiling"], agent["bare_ceiling"], agent["ceiling_ratio"]) == (2000, 4000, 0.5)
    assert agent["p99_ratio_at_2000"] == 2.5
    assert guest["ceiling"] is None and guest["ceiling_ratio"] == 0.0


def test_s7_bytes_per_socket_is_the_growth_divided_by_the_sockets() -> None:
    import math

    from loadtest.s7_idle_sockets import per_socket

    assert per_socket(100_000_000, 150_000_000, 1000) == 50_000
    assert math.isnan(per_socket(1, 2, 0))
