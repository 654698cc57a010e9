"""S3: the signed Twilio webhook's acknowledgement vs `GET /healthz`, open loop, 50-800 req/s.

One `hotelchat serve` process on embedded PostgreSQL and Redis (no worker: the reply jobs wait in
Redis, so only the acknowledgement path is measured). At each offered rate the baseline
(`/healthz` on the same server: HTTP parsing, routing, a JSON response) runs, then the webhook (a
new signed message each time: signature check, routing, store and commit, enqueue), each for
`--seconds`; latency is from each request's due time. A request not answered within 10 s is an
error ("TimeoutError"), as Twilio's own webhook timeout would make it one.

Run:  .venv/bin/python -m loadtest s3 [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp

from hotelchat.adapters.twilio import sign
from hotelchat.entrypoints.simulate import inbound_params
from loadtest import harness
from loadtest.harness import ACCOUNT, AUTH_TOKEN, NUMBER, fmt, log

NAME = "s3_webhook"
TIMEOUT = aiohttp.ClientTimeout(total=10)


async def sweep(base: str, rates: list[float], seconds: float) -> dict[str, list[dict[str, Any]]]:
    url = base + "/webhooks/twilio/whatsapp"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as http:

        async def health(_i: int) -> str:
            async with http.get(base + "/healthz") as response:
                await response.read()
                return "ok" if response.status == 200 else str(response.status)

        async def webhook(i: int) -> str:
            form = inbound_params(
                account_sid=ACCOUNT,
                to_number=NUMBER,
                from_number=harness.new_guest(),
                profile_name="Bench Guest",
                body=harness.question(i),
            )
            headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, url, form)}
            async with http.post(url, data=form, headers=headers) as response:
                await response.read()
                return "ok" if response.status == 200 else str(response.status)

        for i in range(30):  # warm up connections and first code paths
            await health(i)
            await webhook(i)
        series: dict[str, list[dict[str, Any]]] = {"GET /healthz (baseline)": [], "webhook": []}
        for rate in rates:
            for label, call in (("GET /healthz (baseline)", health), ("webhook", webhook)):
                samples = await harness.open_loop(rate, seconds, call, label=label)
                step = harness.summary(samples, seconds) | {"offered": rate}
                step["samples"] = [[s.due, s.latency, s.outcome] for s in samples]
                series[label].append(step)
                log(
                    f"{label} at {rate:g}/s: p50 {fmt(step['p50_ms'])} ms, p99 "
                    f"{fmt(step['p99_ms'])} ms, {step['throughput']:.0f}/s served, "
                    f"{step['errors']} errors {step['outcomes']}"
                )
                await asyncio.sleep(3.0)  # let the backlog of the step before drain
    return series


def table(series: dict[str, list[dict[str, Any]]]) -> str:
    base = {s["offered"]: s for s in series["GET /healthz (baseline)"]}
    lines = [
        "| offered req/s | request | p50 ms | p99 ms | served/s | errors | p99 ÷ baseline p99 "
        "| outcomes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in series["webhook"]:
        b = base[step["offered"]]
        for label, s in (("/healthz (baseline)", b), ("signed webhook", step)):
            ratio = s["p99_ms"] / b["p99_ms"] if b["p99_ms"] > 0 else float("nan")
            lines.append(
                f"| {s['offered']:g} | {label} | {fmt(s['p50_ms'])} | {fmt(s['p99_ms'])} | "
                f"{s['throughput']:.0f} | {s['errors']} | {fmt(ratio, 2)} | "
                + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()))
                + " |"
            )
    return "\n".join(lines)


def run(quick: bool, *, docs: Any = harness.DOCS) -> dict[str, Any]:
    rates = [50.0, 200.0] if quick else [50.0, 100.0, 200.0, 400.0, 800.0]
    seconds = 3.0 if quick else 10.0
    start = harness.machine()
    stack = harness.Stack()
    try:
        stack.serve()
        series = asyncio.run(sweep(stack.web_url, rates, seconds))
    finally:
        stack.close()
    data = {
        "scenario": NAME,
        "quick": quick,
        "seconds_per_step": seconds,
        "machine": start,
        "machine_end": harness.machine(),
        "series": series,
    }
    harness.plot_sweep(
        docs / "benchmarks" / f"{NAME}.png", "S3: signed webhook vs /healthz (open loop)", series
    )
    body = (
        "One `hotelchat serve`, no worker; at each offered rate the baseline (`GET /healthz`, "
        "same server) and then the signed webhook (a new message each time), "
        f"{seconds:g} s each, open loop (latency from each request's due time; 10 s timeout).\n\n"
        + table(series)
        + f"\n\n![S3](benchmarks/{NAME}.png)\n"
    )
    command = ".venv/bin/python -m loadtest s3" + (" --quick" if quick else "")
    harness.write_report(NAME, "S3: signed webhook vs /healthz", command, body, data, docs=docs)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two short steps (< 60 s)")
    run(parser.parse_args(argv).quick)


if __name__ == "__main__":
    main()
