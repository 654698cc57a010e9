"""Seed 003's tiers, as a user-level check: 10 / 100 / 500 / 1,000 concurrent web-chat guests
having a conversation (that system claimed 90 / 80 / 70 / 60 % success; the target here is 100 %
and reply time p95 within 1 s of the model's own time).

Each guest opens a session and its socket, then, until the tier's time is up, writes a message,
waits for the answer (at most 30 s: longer counts as a failure), thinks `THINK` seconds and writes
again. Guests start spread over the first `RAMP` seconds. Success rate = answered messages ÷
messages sent (a guest that could not connect counts one failed message). Baseline: the model's
own time per answer, measured by the emulator in the same run. One web process, two workers,
default settings (TRUSTED_PROXY_HOPS=1: each guest has its own address).

Run:  .venv/bin/python -m loadtest tiers [--quick] [--tiers 10,100,500,1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import urllib.request
from typing import Any

import aiohttp

from hotelchat.adapters.embedded import free_port
from loadtest import harness
from loadtest.harness import fmt, log
from loadtest.webchat_guests import Guest, Turn

NAME = "tiers_webchat"
THINK = 5.0
RAMP = 5.0
REPLY_TIMEOUT = 30.0
CLAIMED = {10: 90, 100: 80, 500: 70, 1000: 60}  # seed 003's success rates, percent


async def tier(base: str, guests_count: int, seconds: float) -> dict[str, Any]:
    turns: list[Turn] = []
    connect_failures = 0
    connect_errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        end = time.monotonic() + seconds

        async def guest(i: int) -> None:
            nonlocal connect_failures
            await asyncio.sleep(RAMP * i / guests_count)
            g = Guest(base, http)
            try:
                await g.connect()
            except Exception as exc:  # any failure to connect is the guest's failure; count it
                connect_failures += 1
                connect_errors[type(exc).__name__] = connect_errors.get(type(exc).__name__, 0) + 1
                return
            try:
                n = 0
                while time.monotonic() < end:
                    n += 1
                    turns.append(await g.say(harness.question(i), REPLY_TIMEOUT))
                    await asyncio.sleep(THINK * (0.5 + secrets.randbelow(1000) / 1000))
            finally:
                await g.close()

        progress_task = asyncio.create_task(progress(turns, guests_count, seconds))
        await asyncio.gather(*(guest(i) for i in range(guests_count)))
        progress_task.cancel()
    ok = [t.reply_seconds * 1000 for t in turns if t.reply_seconds is not None]
    sent = len(turns) + connect_failures
    errors: dict[str, int] = {}
    for t in turns:
        if t.error:
            errors[t.error] = errors.get(t.error, 0) + 1
    for name, count in connect_errors.items():
        errors[f"connect {name}"] = count
    return {
        "guests": guests_count,
        "seconds": seconds,
        "messages": sent,
        "answered": len(ok),
        "success_percent": 100 * len(ok) / sent if sent else float("nan"),
        "errors": errors,
        "p50_ms": harness.percentile(ok, 50),
        "p95_ms": harness.percentile(ok, 95),
        "p99_ms": harness.percentile(ok, 99),
        "reply_ms": ok,
    }


async def progress(turns: list[Turn], guests: int, seconds: float) -> None:
    while True:
        await asyncio.sleep(5)
        done = sum(1 for t in turns if t.reply is not None)
        log(f"  {guests} guests: {len(turns)} messages, {done} answered")


def model_time(openai_url: str) -> float:
    with urllib.request.urlopen(openai_url + "/_bench/model", timeout=10) as r:
        return harness.percentile(json.loads(r.read())["durations"], 50)


def run(
    quick: bool,
    *,
    tiers: list[int] | None = None,
    seconds: float | None = None,
    docs: Any = harness.DOCS,
) -> dict[str, Any]:
    explicit_tiers, explicit_seconds = tiers is not None, seconds is not None
    tiers = tiers or ([10] if quick else [10, 100, 500, 1000])
    seconds = seconds or (10.0 if quick else 60.0)
    start = harness.machine()
    stack = harness.Stack(time_to_first_token=0.5, tokens_per_second=50.0)
    results = []
    try:
        env = {"TRUSTED_PROXY_HOPS": "1"}
        stack.serve(**env)
        for _ in range(2):
            stack.worker(free_port(), **env)
        for count in tiers:
            log(f"--- tier: {count} concurrent web-chat guests for {seconds:g} s ---")
            result = asyncio.run(tier(stack.web_url, count, seconds))
            results.append(result)
            log(
                f"{count} guests: {result['success_percent']:.1f} % answered of "
                f"{result['messages']}, p95 {fmt(result['p95_ms'], 0)} ms, {result['errors']}"
            )
            time.sleep(5)
        own = model_time(stack.openai_url)
    finally:
        stack.close()
    data = {
        "scenario": NAME,
        "quick": quick,
        "think_seconds": THINK,
        "model_own_seconds_p50": own,
        "machine": start,
        "machine_end": harness.machine(),
        "tiers": results,
    }
    lines = [
        "| guests | seconds | messages | answered % | seed 003 claimed % | reply p50 s | p95 s | "
        "p95 - model s | failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['guests']} | {r['seconds']:g} | {r['messages']} | "
            f"{fmt(r['success_percent'])} | {CLAIMED.get(r['guests'], '')} | "
            f"{fmt(r['p50_ms'] / 1000, 2)} | {fmt(r['p95_ms'] / 1000, 2)} | "
            f"{fmt(r['p95_ms'] / 1000 - own, 2)} | {r['errors'] or 0} |"
        )
    _plot(docs, results)
    body = (
        f"Model emulator: time to first token 0.5 s, 50 tokens/s; its own time per answer "
        f"(median) {own:.2f} s. Each guest writes, waits for the answer (≤ {REPLY_TIMEOUT:g} s), "
        f"thinks {THINK * 0.5:g}-{THINK * 1.5:g} s, writes again; guests start over {RAMP:g} s. "
        "One web process, two workers, defaults.\n\n"
        + "\n".join(lines)
        + f"\n\n![tiers](benchmarks/{NAME}.png)\n"
    )
    command = ".venv/bin/python -m loadtest tiers" + (" --quick" if quick else "")
    if explicit_tiers:
        command += " --tiers " + ",".join(str(t) for t in tiers)
    if explicit_seconds:
        command += f" --seconds {seconds:g}"
    harness.write_report(NAME, "Seed 003's tiers: web-chat guests", command, body, data, docs=docs)
    return data


def _plot(docs: Any, results: list[dict[str, Any]]) -> None:
    steps = [
        {
            "offered": r["guests"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p95_ms"],
            "throughput": r["answered"] / r["seconds"],
            "errors": r["messages"] - r["answered"],
        }
        for r in results
    ]
    harness.plot_sweep(
        docs / "benchmarks" / f"{NAME}.png",
        "Seed 003 tiers (x: concurrent guests; 'p99' line shows p95; throughput: answers/s)",
        {"web chat": steps},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 guests for 15 s")
    parser.add_argument("--tiers", help="comma-separated guest counts")
    parser.add_argument("--seconds", type=float, help="seconds per tier")
    args = parser.parse_args(argv)
    run(
        args.quick,
        tiers=[int(x) for x in args.tiers.split(",")] if args.tiers else None,
        seconds=args.seconds,
    )


if __name__ == "__main__":
    main()
