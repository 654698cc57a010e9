"""S4: job pickup, from enqueue to the job starting: arq as HotelChat's worker configures it
(`poll_delay` 0.1 s, `max_jobs` = WORKER_MAX_JOBS's default, `keep_result` 0) vs the floor, a raw
Redis `BLPOP` consumer, on the same embedded Redis, interleaved at each offered rate.

Jobs are enqueued open loop from this process (each due at its time); each consumer is a process
of its own that runs a job doing nothing but record its start (unix time) in Redis. Pickup
latency is start minus due time.

Run:  .venv/bin/python -m loadtest s4 [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from arq import Worker, func
from arq.connections import ArqRedis, RedisSettings, create_pool

from hotelchat.config import Settings
from loadtest import harness
from loadtest.harness import fmt, log

NAME = "s4_job_pickup"
ARQ_QUEUE = "bench:s4:arq"
RAW_QUEUE = "bench:s4:raw"
DONE = "bench:s4:done:"
READY = "bench:s4:ready:"
MAX_JOBS = Settings.model_fields["worker_max_jobs"].default
POLL_DELAY = 0.1  # hotelchat.entrypoints.worker.create_worker's


async def noop(ctx: dict[str, Any], kind: str, sequence: int) -> None:
    """The job: record when it started."""
    await ctx["redis"].rpush(DONE + kind, json.dumps([sequence, time.time()]))


def consume(kind: str, url: str) -> None:
    """Run one consumer (`arq` or `blpop`) until killed."""
    if kind == "arq":

        async def ready(ctx: dict[str, Any]) -> None:
            await ctx["redis"].set(READY + "arq", "1")

        worker = Worker(
            on_startup=ready,
            functions=[func(noop, name="noop", keep_result=0)],
            redis_settings=RedisSettings.from_dsn(url),
            queue_name=ARQ_QUEUE,
            max_jobs=MAX_JOBS,
            poll_delay=POLL_DELAY,
            keep_result=0,
            handle_signals=True,
        )
        worker.run()
        return

    async def loop() -> None:
        client = aioredis.Redis.from_url(url)
        await client.set(READY + "blpop", "1")
        while True:
            item = await client.blpop([RAW_QUEUE], timeout=1)
            if item is not None:
                await client.rpush(DONE + "blpop", json.dumps([json.loads(item[1]), time.time()]))

    asyncio.run(loop())


async def consumers_ready(url: str, timeout: float = 60.0) -> None:
    """Wait until both consumers said they are ready; raise RuntimeError after `timeout` s."""
    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(int(timeout / 0.2)):
            if await client.exists(READY + "arq", READY + "blpop") == 2:
                await asyncio.sleep(0.5)  # arq's first poll
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the S4 consumers did not start")
    finally:
        await client.aclose()


async def sweep(url: str, rates: list[float], seconds: float) -> dict[str, list[dict[str, Any]]]:
    client = aioredis.Redis.from_url(url)
    arq: ArqRedis = await create_pool(RedisSettings.from_dsn(url))
    series: dict[str, list[dict[str, Any]]] = {
        "raw BLPOP (baseline)": [],
        "arq (as configured)": [],
    }
    try:
        for rate in rates:
            for label, kind in (("raw BLPOP (baseline)", "blpop"), ("arq (as configured)", "arq")):
                due: dict[int, float] = {}
                offset = time.time() - asyncio.get_running_loop().time()

                async def enqueue(
                    i: int, kind: str = kind, due: dict[int, float] = due, offset: float = offset
                ) -> str:
                    due[i] = asyncio.get_running_loop().time() + offset
                    if kind == "arq":
                        await arq.enqueue_job("noop", "arq", i, _queue_name=ARQ_QUEUE)
                    else:
                        await client.rpush(RAW_QUEUE, json.dumps(i))
                    return "ok"

                await client.delete(DONE + kind)
                samples = await harness.open_loop(rate, seconds, enqueue, label=label)
                for _ in range(50):  # up to 10 s for the last jobs to start
                    if await client.llen(DONE + kind) >= len(due):
                        break
                    await asyncio.sleep(0.2)
                started = {
                    seq: at
                    for seq, at in (json.loads(x) for x in await client.lrange(DONE + kind, 0, -1))
                }
                pickups = [
                    harness.Sample(0.0, started[i] - due[i], "ok") if i in started else
                    harness.Sample(0.0, 0.0, "not_started")
                    for i in due
                ]  # fmt: skip
                stats = harness.summary(pickups, seconds) | {"offered": rate}
                stats["enqueue_errors"] = sum(1 for s in samples if s.outcome != "ok")
                stats["latencies_ms"] = [s.latency * 1000 for s in pickups if s.outcome == "ok"]
                series[label].append(stats)
                log(
                    f"{label} at {rate:g}/s: pickup p50 {fmt(stats['p50_ms'])} ms, p99 "
                    f"{fmt(stats['p99_ms'])} ms, {stats['errors']} not started"
                )
    finally:
        await arq.aclose()
        await client.aclose()
    return series


def table(series: dict[str, list[dict[str, Any]]]) -> str:
    base = {s["offered"]: s for s in series["raw BLPOP (baseline)"]}
    lines = [
        "| offered jobs/s | consumer | pickup p50 ms | p95 ms | p99 ms | not started | "
        "p50 ÷ baseline p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in series["arq (as configured)"]:
        b = base[step["offered"]]
        for label, s in (("raw BLPOP (baseline)", b), ("arq (as configured)", step)):
            lines.append(
                f"| {s['offered']:g} | {label} | {fmt(s['p50_ms'])} | {fmt(s['p95_ms'])} | "
                f"{fmt(s['p99_ms'])} | {s['errors']} | {fmt(s['p50_ms'] / b['p50_ms'], 1)} |"
            )
    return "\n".join(lines)


def run(quick: bool, *, docs: Any = harness.DOCS) -> dict[str, Any]:
    rates = [50.0] if quick else [20.0, 100.0, 500.0, 1000.0]
    seconds = 3.0 if quick else 8.0
    start = harness.machine()
    stack = harness.Stack()
    try:
        for kind in ("arq", "blpop"):
            stack.spawn(
                f"consumer-{kind}",
                [sys.executable, "-m", "loadtest.s4_job_pickup", "--consume", kind,
                 "--redis", stack.redis.url],
                stack.env(),
            )  # fmt: skip
        asyncio.run(consumers_ready(stack.redis.url))
        series = asyncio.run(sweep(stack.redis.url, rates, seconds))
    finally:
        stack.close()
    data = {
        "scenario": NAME,
        "quick": quick,
        "seconds_per_step": seconds,
        "arq": {"max_jobs": MAX_JOBS, "poll_delay": POLL_DELAY},
        "machine": start,
        "machine_end": harness.machine(),
        "series": series,
    }
    harness.plot_sweep(docs / "benchmarks" / f"{NAME}.png", "S4: job pickup", series)
    body = (
        f"arq `Worker` with HotelChat's settings (poll_delay {POLL_DELAY} s, max_jobs "
        f"{MAX_JOBS}, keep_result 0) vs a raw `BLPOP` consumer, one process each, on the same "
        f"Redis; jobs enqueued open loop, {seconds:g} s per step; throughput = jobs started "
        "per second; a job that does nothing but record its start.\n\n"
        + table(series)
        + f"\n\n![S4](benchmarks/{NAME}.png)\n"
    )
    command = ".venv/bin/python -m loadtest s4" + (" --quick" if quick else "")
    harness.write_report(NAME, "S4: job pickup", command, body, data, docs=docs)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short step (< 60 s)")
    parser.add_argument("--consume", choices=["arq", "blpop"], help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.consume:
        consume(args.consume, args.redis)
    else:
        run(args.quick)


if __name__ == "__main__":
    main()
