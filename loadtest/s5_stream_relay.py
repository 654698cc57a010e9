"""S5: the AI stream relay. Time to first token as a web-chat guest sees it (message sent ->
first `ai_delta` on the guest's socket) vs the model's own (the emulator's fixed time to first
token, measured in the same run by a streamed call of the official `openai` client straight to
the emulator, interleaved with the guests' messages), at a few offered rates. One web process and
two workers with default settings.

Not measured here: the dashboard's (agent socket) view of the same stream; see docs.

Run:  .venv/bin/python -m loadtest s5 [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai

from hotelchat.adapters.embedded import free_port
from loadtest import harness
from loadtest.harness import OPENAI_KEY, Sample, fmt, log
from loadtest.webchat_guests import Guest, Turn

NAME = "s5_stream_relay"
TTFT = 0.5
REPLY_TIMEOUT = 30.0


async def sweep(
    base: str, openai_url: str, rates: list[float], seconds: float
) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = {
        "model's own (baseline)": [],
        "web chat": [],
        "web chat, whole reply": [],
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
        openai.AsyncOpenAI(api_key=OPENAI_KEY, base_url=openai_url + "/v1", timeout=30) as model,
    ):
        guests: list[Guest] = []
        try:
            for rate in rates:
                # One message per guest, each a new guest: a guest with two replies in flight
                # could not tell whose `ai_delta` is whose, and a first question is the common one.
                fresh = [Guest(base, http) for _ in range(max(1, int(rate * seconds)))]
                await asyncio.gather(*(g.connect() for g in fresh))
                guests.extend(fresh)
                pool = iter(fresh)
                log(f"{len(fresh)} web-chat guests connected")
                own: list[Sample] = []

                async def direct(_i: int, own: list[Sample] = own) -> str:
                    started = time.monotonic()
                    stream = await model.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": "Is there parking?"}],
                        stream=True,
                    )
                    async for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            own.append(Sample(0.0, time.monotonic() - started, "ok"))
                            break
                    await stream.close()
                    return "ok"

                turns: list[Turn] = []

                async def chat(
                    i: int, turns: list[Turn] = turns, pool: Iterator[Guest] = pool
                ) -> str:
                    turn = await next(pool).say(harness.question(i), REPLY_TIMEOUT)
                    turns.append(turn)
                    return turn.error or "ok"

                # Interleaved: the guests' messages and the direct calls at the same rate.
                await asyncio.gather(
                    harness.open_loop(rate, seconds, chat, label="web chat"),
                    harness.open_loop(rate, seconds, direct, label="model"),
                )
                first = [
                    Sample(0.0, t.ttft_seconds, "ok")
                    if t.ttft_seconds is not None
                    else Sample(0.0, 0.0, t.error or "no_token")
                    for t in turns
                ]
                whole = [
                    Sample(0.0, t.reply_seconds, "ok")
                    if t.reply_seconds is not None
                    else Sample(0.0, 0.0, t.error or "no_reply")
                    for t in turns
                ]
                for label, samples in (
                    ("model's own (baseline)", own),
                    ("web chat", first),
                    ("web chat, whole reply", whole),
                ):
                    stats = harness.summary(samples, seconds) | {"offered": rate}
                    stats["latencies_ms"] = [s.latency * 1000 for s in samples if s.outcome == "ok"]
                    series[label].append(stats)
                    log(
                        f"{label} at {rate:g}/s: p50 {fmt(stats['p50_ms'], 0)} ms, p99 "
                        f"{fmt(stats['p99_ms'], 0)} ms, {stats['errors']} errors "
                        f"{stats['outcomes']}"
                    )
        finally:
            await asyncio.gather(*(g.close() for g in guests), return_exceptions=True)
    return series


def table(series: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| offered msgs/s | measured | p50 ms | p95 ms | p99 ms | errors | p50 - model's p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, base in enumerate(series["model's own (baseline)"]):
        for label, steps in series.items():
            s = steps[i]
            lines.append(
                f"| {s['offered']:g} | {label} | {fmt(s['p50_ms'], 0)} | {fmt(s['p95_ms'], 0)} | "
                f"{fmt(s['p99_ms'], 0)} | {s['errors']} | {fmt(s['p50_ms'] - base['p50_ms'], 0)} |"
            )
    return "\n".join(lines)


def run(quick: bool, *, docs: Any = harness.DOCS) -> dict[str, Any]:
    rates = [1.0] if quick else [1.0, 4.0, 8.0]
    seconds = 5.0 if quick else 15.0
    start = harness.machine()
    stack = harness.Stack(time_to_first_token=TTFT, tokens_per_second=50.0)
    try:
        env = {"TRUSTED_PROXY_HOPS": "1"}
        stack.serve(**env)
        for _ in range(2):
            stack.worker(free_port(), **env)
        series = asyncio.run(sweep(stack.web_url, stack.openai_url, rates, seconds))
    finally:
        stack.close()
    data = {
        "scenario": NAME,
        "quick": quick,
        "seconds_per_step": seconds,
        "model_time_to_first_token": TTFT,
        "machine": start,
        "machine_end": harness.machine(),
        "series": series,
    }
    harness.plot_sweep(
        docs / "benchmarks" / f"{NAME}.png", "S5: time to first token, web chat vs model", series
    )
    body = (
        f"Model emulator: time to first token {TTFT} s, 50 tokens/s. One web process, two "
        "workers, defaults (TRUSTED_PROXY_HOPS=1 so each web-chat guest has its own address; "
        f"one message per guest); {seconds:g} s per step, guests' messages and direct model "
        "calls open loop at the same rate. 'web chat' = message POSTed -> first `ai_delta` "
        "on the guest's "
        "socket; 'whole reply' = -> the stored reply's `message` event; the baseline is a "
        "streamed call straight to the emulator (first content chunk).\n\n"
        + table(series)
        + f"\n\n![S5](benchmarks/{NAME}.png)\n"
    )
    command = ".venv/bin/python -m loadtest s5" + (" --quick" if quick else "")
    harness.write_report(NAME, "S5: AI stream relay", command, body, data, docs=docs)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short step (< 60 s)")
    run(parser.parse_args(argv).quick)


if __name__ == "__main__":
    main()
