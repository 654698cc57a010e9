"""S2: fan-out of one event to a hotel's room, across two web processes through the Socket.IO
Redis manager vs one process in memory, open loop over a rate sweep.

Each message is one event emitted to the room; its latency is from its due time until the last
of the room's sockets received it (5 s at most, else it counts as "partial"). Targets, run one
after the other at each rate (order rotating per step), all in the same run:

- bare python-socketio, one process, in memory (the baseline): a client's `fanout` event, whose
  handler emits to the room (`loadtest/bare_socketio.py`);
- bare python-socketio, two processes, Redis manager: the same, receivers split over both;
- hotelchat, one web process: the event emitted as a worker emits (write-only Redis manager on
  the product's channel) to `hotel:<id>`, all agents on one `hotelchat serve`;
- hotelchat, two web processes: the same, agents split over two `hotelchat serve`.

Run:  .venv/bin/python -m loadtest s2 [--quick] [--receivers 20] [--rates 50,100,...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hotelchat.adapters.embedded import free_port
from hotelchat.adapters.realtime import create_emitter
from hotelchat.domain.conversation import AGENT_NAMESPACE, hotel_room
from loadtest import harness, socket_clients
from loadtest.harness import fmt, log
from loadtest.socket_clients import Tab, connect_all, connect_tab

NAME = "s2_fanout"
TIMEOUT = 5.0
MEMORY, BARE_REDIS = "bare, 1 process, in memory", "bare, 2 processes, Redis"
ONE, TWO = "hotelchat, 1 web process", "hotelchat, 2 web processes"


class Room:
    """Receivers of one target: `delivered(seq)` resolves once all of them have `seq`."""

    def __init__(self, tabs: list[Tab]) -> None:
        self.tabs = tabs
        self._waiting: dict[int, tuple[list[int], asyncio.Event]] = {}
        for tab in tabs:
            tab.notify = self._arrived

    def _arrived(self, seq: int) -> None:
        entry = self._waiting.get(seq)
        if entry is not None:
            entry[0][0] -= 1
            if entry[0][0] <= 0:
                entry[1].set()

    async def delivered(self, seq: int, send: Callable[[], Awaitable[None]]) -> str:
        done = asyncio.Event()
        self._waiting[seq] = ([len(self.tabs)], done)
        try:
            await send()
            await asyncio.wait_for(done.wait(), TIMEOUT)
        except TimeoutError:
            return "partial"
        finally:
            del self._waiting[seq]
        return "ok"


async def sweep(
    stack: harness.Stack, web2_base: str, bare_base: str, redis_bases: tuple[str, str],
    receivers: int, rates: list[float], seconds: float,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:  # fmt: skip
    emitter = create_emitter(stack.redis.url)
    hotel = await socket_clients.hotel_id(stack)
    agents = await socket_clients.open_agents(stack, 2 * receivers)
    half = receivers // 2
    plan: dict[str, list[Callable[[], Awaitable[Tab]]]] = {
        MEMORY: [partial(connect_tab, bare_base, AGENT_NAMESPACE) for _ in range(receivers)],
        BARE_REDIS: [partial(connect_tab, redis_bases[i % 2], AGENT_NAMESPACE)
                     for i in range(receivers)],
        ONE: [partial(connect_tab, stack.web_url, AGENT_NAMESPACE, cookie=a.token)
              for a in agents[:receivers]],
        TWO: [partial(connect_tab, stack.web_url if i < half else web2_base, AGENT_NAMESPACE,
                      cookie=a.token)
              for i, a in enumerate(agents[receivers:])],
    }  # fmt: skip
    rooms: dict[str, Room] = {}
    setup: dict[str, Any] = {}
    for label, opens in plan.items():
        tabs, failures, took = await connect_all(opens, concurrency=20, label=label)
        setup[label] = {"connected": len(tabs), "failures": dict(failures), "seconds": took}
        if failures:
            raise RuntimeError(f"{label}: sockets failed: {dict(failures)}")
        rooms[label] = Room(tabs)
    await asyncio.sleep(1.0)  # the agents' presence batches go out before measuring
    log(f"{receivers} receivers per target connected")
    seqs = itertools.count(1)

    def product(label: str) -> Callable[[int], Awaitable[str]]:
        async def call(_i: int) -> str:
            seq = next(seqs)

            async def send() -> None:
                await emitter.emit("probe", {"seq": seq}, namespace=AGENT_NAMESPACE,
                                   room=hotel_room(hotel))  # fmt: skip

            return await rooms[label].delivered(seq, send)

        return call

    def bare(label: str) -> Callable[[int], Awaitable[str]]:
        sender = rooms[label].tabs[0]

        async def call(_i: int) -> str:
            seq = next(seqs)

            async def send() -> None:
                await sender.client.emit("fanout", {"seq": seq}, namespace=AGENT_NAMESPACE)

            return await rooms[label].delivered(seq, send)

        return call

    targets = [(MEMORY, bare(MEMORY)), (BARE_REDIS, bare(BARE_REDIS)), (ONE, product(ONE)),
               (TWO, product(TWO))]  # fmt: skip
    series: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in targets}
    try:
        for _label, warm in targets:
            for i in range(10):  # warm up
                await warm(i)
        for k, rate in enumerate(rates):
            shift = k % len(targets)
            for label, call in targets[shift:] + targets[:shift]:
                samples = await harness.open_loop(rate, seconds, call, label=label)
                step = harness.summary(samples, seconds) | {"offered": rate}
                step["latencies_ms"] = [round(s.latency * 1000, 2) for s in samples
                                        if s.outcome == "ok"]  # fmt: skip
                series[label].append(step)
                log(f"{label} at {rate:g}/s: p50 {fmt(step['p50_ms'])} ms, p99 "
                    f"{fmt(step['p99_ms'])} ms, {step['errors']} errors "
                    f"{step['outcomes']}")  # fmt: skip
                await asyncio.sleep(1.0)
    finally:
        await socket_clients.close_all([t for r in rooms.values() for t in r.tabs])
        redis = getattr(emitter, "redis", None)
        if redis is not None:
            await redis.aclose()
    return series, setup


def table(series: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| offered events/s | target | p50 ms | p99 ms | delivered/s | errors "
        "| p99 ÷ in-memory p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, base in enumerate(series[MEMORY]):
        for label, steps in series.items():
            s = steps[i]
            ratio = s["p99_ms"] / base["p99_ms"] if base["p99_ms"] > 0 else float("nan")
            lines.append(
                f"| {s['offered']:g} | {label} | {fmt(s['p50_ms'])} | {fmt(s['p99_ms'])} | "
                f"{s['throughput']:.0f} | {s['errors']} | {fmt(ratio, 2)} |"
            )
    return "\n".join(lines)


def run(quick: bool, receivers: int, rates: list[float], *,
        docs: Any = harness.DOCS) -> dict[str, Any]:  # fmt: skip
    seconds = 2.0 if quick else 5.0
    socket_clients.raise_open_files()
    start = harness.machine()
    stack = harness.Stack()
    try:
        stack.serve()
        web2_port = free_port()
        socket_clients.serve_on(stack, web2_port, name="web2")
        _bare, bare_base = socket_clients.start_bare(stack)
        _a, a_base = socket_clients.start_bare(stack, redis=True, name="bare-redis-a")
        _b, b_base = socket_clients.start_bare(stack, redis=True, name="bare-redis-b")
        series, setup = asyncio.run(sweep(
            stack, f"http://127.0.0.1:{web2_port}", bare_base, (a_base, b_base), receivers,
            rates, seconds,
        ))  # fmt: skip
    finally:
        stack.close()
    data = {
        "scenario": NAME, "quick": quick, "seconds_per_step": seconds, "receivers": receivers,
        "machine": start, "machine_end": harness.machine(), "setup": setup, "series": series,
    }  # fmt: skip
    harness.plot_sweep(
        docs / "benchmarks" / f"{NAME}.png",
        f"S2: one event to a room of {receivers} sockets, until the last receives it", series,
    )  # fmt: skip
    body = (
        ("**Quick run (smoke test: few receivers, short steps); not a measurement.**\n\n"
         if quick else "")
        + f"{receivers} receiving sockets per target (split evenly over two processes where "
        "there are two); one event per message, latency from its due time until the last "
        f"receiver has it ({TIMEOUT:g} s at most, else \"partial\"); {seconds:g} s per step, "
        "the targets interleaved per step. hotelchat's events are emitted as a worker emits "
        "(write-only Redis manager, the product's channel) to `hotel:<id>` of agents "
        "connected with their session cookie; bare python-socketio's by a client's `fanout` "
        "event (its handler emits to the room: in memory, or through its Redis manager). "
        "All four servers run during the whole sweep; the load generator is one process.\n\n"
        + table(series) + f"\n\n![S2](benchmarks/{NAME}.png)\n"
    )  # fmt: skip
    command = ".venv/bin/python -m loadtest s2" + (" --quick" if quick else "")
    harness.write_report(NAME, "S2: fan-out across web processes through Redis", command, body,
                         data, docs=docs)  # fmt: skip
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few receivers, short steps")
    parser.add_argument("--receivers", type=int, default=None, help="sockets in the room")
    parser.add_argument("--rates", default=None, help="comma-separated offered events/s")
    args = parser.parse_args(argv)
    receivers = args.receivers or (6 if args.quick else 20)
    rates = ([float(r) for r in args.rates.split(",")] if args.rates
             else [50.0, 100.0] if args.quick else [50.0, 100.0, 200.0, 400.0, 800.0])  # fmt: skip
    run(args.quick, receivers, rates)


if __name__ == "__main__":
    main()
