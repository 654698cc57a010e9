"""S6: end to end, webhook -> worker -> model (emulated: fixed time to first token, tokens per
second) -> Twilio (emulated), at rising offered rates until it breaks, next to a one-process
baseline in the same run.

Each inbound message comes from a new guest number, so each reply maps to one message: the
exactly-once check counts the Twilio emulator's sends per accepted message (0 missing, 0
duplicated). Reply latency is from the message's due time to the Twilio emulator accepting the
send. After each step the run waits up to `drain` seconds for the answers. Per step: where the
time went, from the product's own Prometheus metrics on the workers' /metrics (queue wait, job
run time, model time and time to first token; the rest of a job is database, retrieval and
Twilio), and CPU per reply (process CPU time of the web process and the workers divided by the
replies sent; the emulators and the load generator excluded). Product settings are the defaults
unless `--env NAME=VALUE` says otherwise.

Configurations, run one after the other (each with the baseline interleaved, step by step):
one web process with 1 worker, then 2 (`--workers 1,2,4` to add 4).

Run:  .venv/bin/python -m loadtest s6 [--quick] [--workers 1,2] [--rates 5,10,20,40,80]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from typing import Any

import aiohttp

from hotelchat.adapters.embedded import free_port
from hotelchat.adapters.twilio import sign
from hotelchat.entrypoints.simulate import inbound_params
from loadtest import harness
from loadtest.harness import ACCOUNT, AUTH_TOKEN, NUMBER, Proc, Stack, fmt, log

NAME = "s6_end_to_end"
TIMEOUT = aiohttp.ClientTimeout(total=10)
BROKEN_SHARE = 0.95  # fewer answered within the drain than this: the step broke
IN_TIME = 2.0  # seconds over the model's own time that still count as "in time"
METRICS = {
    "queue_wait": "hotelchat_job_queue_wait_seconds",
    "job": "hotelchat_job_duration_seconds",
}
MODEL_METRICS = {
    "model": "hotelchat_ai_request_duration_seconds",
    "ttft": "hotelchat_ai_time_to_first_token_seconds",
}


class Sends:
    """The Twilio emulator's sends, fetched incrementally: guest number -> send times."""

    def __init__(self, twilio_url: str) -> None:
        self.url = twilio_url
        self.next = 0
        self.by_guest: dict[str, list[float]] = {}

    def poll(self) -> None:
        with urllib.request.urlopen(f"{self.url}/_bench/sends?since={self.next}", timeout=10) as r:
            data = json.loads(r.read())
        for guest, at in data["sends"]:
            self.by_guest.setdefault(guest, []).append(at)
        self.next = data["next"]


def model_time(openai_url: str) -> float:
    """Median seconds the emulated model took per chat answer so far."""
    with urllib.request.urlopen(openai_url + "/_bench/model", timeout=10) as r:
        durations = json.loads(r.read())["durations"]
    return harness.percentile(durations, 50)


async def step(
    url: str,
    rate: float,
    seconds: float,
    drain: float,
    sends: Sends,
    label: str,
) -> dict[str, Any]:
    """One open-loop step of `rate` webhooks/s for `seconds` into `url`, then up to `drain`
    seconds for the replies."""
    due_wall: dict[str, float] = {}
    accepted: list[str] = []
    started = time.time()
    offset = time.time() - asyncio.get_running_loop().time()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=TIMEOUT
    ) as http:

        async def webhook(i: int) -> str:
            guest = harness.new_guest()
            due_wall[guest] = asyncio.get_running_loop().time() + offset
            form = inbound_params(
                account_sid=ACCOUNT,
                to_number=NUMBER,
                from_number=guest,
                profile_name="Bench Guest",
                body=harness.question(i),
            )
            headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, url, form)}
            async with http.post(url, data=form, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    accepted.append(guest)
                    return "ok"
                return str(response.status)

        samples = await harness.open_loop(rate, seconds, webhook, label=label)
    deadline = time.monotonic() + drain
    while True:
        await asyncio.to_thread(sends.poll)
        answered = sum(1 for g in accepted if g in sends.by_guest)
        if answered == len(accepted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    check = harness.exactly_once(
        accepted,
        [g for g in due_wall for _ in sends.by_guest.get(g, [])],
    )
    latencies = [
        (sends.by_guest[g][0] - due_wall[g]) * 1000 for g in accepted if g in sends.by_guest
    ]
    ack = harness.summary(samples, seconds)
    return {
        "offered": rate,
        "seconds": seconds,
        "webhook": {k: v for k, v in ack.items()},
        "accepted": len(accepted),
        "answered": check.answered,
        "missing": len(check.missing),
        "duplicated": len(check.duplicated),
        "unexpected": check.unexpected,
        "p50_ms": harness.percentile(latencies, 50),
        "p95_ms": harness.percentile(latencies, 95),
        "p99_ms": harness.percentile(latencies, 99),
        "throughput": check.answered / max(seconds, last_reply(sends, accepted) - started),
        "errors": ack["errors"] + len(check.missing),
        "reply_latencies_ms": latencies,
        "answered_any": sum(1 for g in due_wall if g in sends.by_guest),
        "due_latency": [
            (
                due_wall[g] - started,
                (sends.by_guest[g][0] - due_wall[g]) * 1000 if g in sends.by_guest else None,
            )
            for g in accepted
        ],
    }


def last_reply(sends: Sends, guests: list[str]) -> float:
    """Unix time of the last reply to any of `guests` (0 if none)."""
    return max((t for g in guests for t in sends.by_guest.get(g, [])), default=0.0)


def scrape_all(urls: list[str]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for url in urls:
        try:
            for key, value in harness.scrape(url).items():
                totals[key] = totals.get(key, 0.0) + value
        except OSError as exc:
            log(f"  could not scrape {url}: {exc}")
    return totals


def breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean seconds per reply job of each part, from the metric deltas of one step."""
    out: dict[str, float] = {}
    for part, metric in {**METRICS, **MODEL_METRICS}.items():
        suffix = "{reply}" if part in METRICS else ""
        total = after.get(f"{metric}_sum{suffix}", 0.0) - before.get(f"{metric}_sum{suffix}", 0.0)
        count = after.get(f"{metric}_count{suffix}", 0.0) - before.get(
            f"{metric}_count{suffix}", 0.0
        )
        out[part] = total / count if count else float("nan")
        out[part + "_count"] = count
    out["other"] = out["job"] - out["model"]  # database, retrieval, Twilio, bookkeeping
    return out


def start_baseline(stack: Stack) -> tuple[Proc, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = stack.spawn(
        "baseline",
        [
            sys.executable, "-m", "loadtest.baseline_app", "--port", str(port),
            "--dsn", stack.postgres.admin_dsn, "--openai-url", stack.openai_url,
            "--twilio-url", stack.twilio_url, "--public-url", base,
        ],
        stack.env(),
    )  # fmt: skip
    harness.wait_http(base + "/healthz", proc=proc)
    return proc, base


def sweep(
    stack: Stack,
    workers: int,
    rates: list[float],
    seconds: float,
    drain: float,
    sends: Sends,
    env: dict[str, str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The product with `workers` workers and the baseline, step by step at each rate, until
    both broke. Returns (product steps, baseline steps)."""
    stack.flush_redis()
    web = stack.serve(**env)
    ports = [free_port() for _ in range(workers)]
    procs = [web] + [stack.worker(port, **env) for port in ports]
    metric_urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    baseline, baseline_url = start_baseline(stack)
    product_steps: list[dict[str, Any]] = []
    baseline_steps: list[dict[str, Any]] = []
    broke = {"product": False, "baseline": False}
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    try:
        time.sleep(3)  # the workers' start-up jobs (knowledge embedding) out of the way
        for rate in rates:
            if all(broke.values()):
                break
            if not broke["baseline"]:
                cpu0 = baseline.cpu_seconds()
                result = asyncio.run(
                    step(baseline_url + "/webhooks/twilio/whatsapp", rate, seconds, drain, sends,
                         "baseline")
                )  # fmt: skip
                cpu = baseline.cpu_seconds() - cpu0
                result["cpu_per_reply_ms"] = (
                    cpu / result["answered"] * 1000 if result["answered"] else float("nan")
                )
                baseline_steps.append(result)
                report_step("baseline", result)
                broke["baseline"] = is_broken(result)
            if not broke["product"]:
                before, cpu0 = scrape_all(metric_urls), sum(p.cpu_seconds() for p in procs)
                result = asyncio.run(
                    step(stack.web_url + "/webhooks/twilio/whatsapp", rate, seconds, drain, sends,
                         label)
                )  # fmt: skip
                cpu = sum(p.cpu_seconds() for p in procs) - cpu0
                result["breakdown"] = breakdown(before, scrape_all(metric_urls))
                result["cpu_seconds"] = cpu
                result["cpu_per_reply_ms"] = (
                    cpu / result["answered"] * 1000 if result["answered"] else float("nan")
                )
                result["rss_mb"] = {p.name + str(i): p.rss_bytes() / 2**20 for i, p in
                                    enumerate(procs)}  # fmt: skip
                product_steps.append(result)
                report_step(label, result)
                broke["product"] = is_broken(result)
    finally:
        for proc in [*procs, baseline]:
            proc.stop()
    return product_steps, baseline_steps


def is_broken(result: dict[str, Any]) -> bool:
    return bool(
        result["accepted"] < BROKEN_SHARE * result["webhook"]["sent"]
        or result["answered"] < BROKEN_SHARE * result["accepted"]
        or result["duplicated"]
    )


def report_step(label: str, r: dict[str, Any]) -> None:
    parts = r.get("breakdown")
    where = (
        f"; wait {fmt(parts['queue_wait'], 2)} s, model {fmt(parts['model'], 2)} s, "
        f"other {fmt(parts['other'], 2)} s, CPU/reply {fmt(r['cpu_per_reply_ms'], 0)} ms"
        if parts
        else ""
    )
    log(
        f"{label} at {r['offered']:g}/s: {r['answered']}/{r['accepted']} answered "
        f"(of {r['webhook']['sent']} sent), p50 {fmt(r['p50_ms'], 0)} ms, p99 "
        f"{fmt(r['p99_ms'], 0)} ms, dup {r['duplicated']}{where}"
    )


def table(configs: dict[str, list[dict[str, Any]]], own: float) -> str:
    lines = [
        "| configuration | offered msgs/s | webhook ok / sent | answered | answered/s | "
        "p50 s | p99 s | p99 - model s | missing | dup | queue wait s | job s | model s | "
        "other s | CPU/reply ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, steps in configs.items():
        for r in steps:
            b = r.get("breakdown") or {}
            lines.append(
                f"| {label} | {r['offered']:g} | {r['webhook']['ok']} / {r['webhook']['sent']} | "
                f"{r['answered']} | {r['throughput']:.1f} | {fmt(r['p50_ms'] / 1000, 2)} | "
                f"{fmt(r['p99_ms'] / 1000, 2)} | {fmt(r['p99_ms'] / 1000 - own, 2)} | "
                f"{r['missing']} | {r['duplicated']} | {fmt(b.get('queue_wait', float('nan')), 2)} "
                f"| {fmt(b.get('job', float('nan')), 2)} | {fmt(b.get('model', float('nan')), 2)} "
                f"| {fmt(b.get('other', float('nan')), 2)} | {fmt(r['cpu_per_reply_ms'], 0)} |"
            )
    return "\n".join(lines)


def run(
    quick: bool,
    *,
    workers: list[int] | None = None,
    rates: list[float] | None = None,
    env: dict[str, str] | None = None,
    label: str = "",
    docs: Any = harness.DOCS,
) -> dict[str, Any]:
    """Run S6; `label` names a variant (its own files and section: s6_end_to_end_<label>)."""
    name = f"{NAME}_{label}" if label else NAME
    workers_given, rates_given = workers, rates
    workers = workers or ([1] if quick else [1, 2])
    rates = rates or ([4.0] if quick else [1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0])
    seconds, drain = (4.0, 8.0) if quick else (10.0, 15.0)
    env = env or {}
    start = harness.machine()
    stack = Stack(time_to_first_token=0.5, tokens_per_second=50.0)
    configs: dict[str, list[dict[str, Any]]] = {}
    try:
        sends = Sends(stack.twilio_url)
        for count in workers:
            log(f"--- product: 1 web process, {count} worker(s); baseline interleaved ---")
            product, baseline = sweep(stack, count, rates, seconds, drain, sends, env)
            configs[f"product, {count} worker{'s' if count > 1 else ''}"] = product
            configs[f"baseline (one process), with the {count}-worker run"] = baseline
        own = model_time(stack.openai_url)
    finally:
        stack.close()
    for steps in configs.values():
        for r in steps:
            r["in_time"] = sum(1 for x in r["reply_latencies_ms"] if x / 1000 <= own + IN_TIME)
    data = {
        "scenario": name,
        "quick": quick,
        "seconds_per_step": seconds,
        "drain_seconds": drain,
        "model_own_seconds_p50": own,
        "env": env,
        "machine": start,
        "machine_end": harness.machine(),
        "configs": configs,
    }
    harness.plot_sweep(
        docs / "benchmarks" / f"{name}.png",
        "S6: end to end (reply latency; errors = webhook failures + unanswered)",
        configs,
    )
    command = ".venv/bin/python -m loadtest s6" + (" --quick" if quick else "")
    for option, given in (("--workers", workers_given), ("--rates", rates_given)):
        if given:
            command += f" {option} " + ",".join(f"{x:g}" for x in given)
    if env:
        command += "".join(f" --env {k}={v}" for k, v in env.items())
    if label:
        command += f" --label {label}"
    body = (
        f"Model emulator: time to first token 0.5 s, 50 tokens/s; its own time per answer "
        f"(median) {own:.2f} s. Each step {seconds:g} s of webhooks (a new guest each), then up "
        f"to {drain:g} s for the replies. Product settings: defaults"
        + (f" except {env}" if env else "")
        + ". Latency is from the message's due time to the Twilio emulator taking the reply; "
        "queue wait, job and model times are the product's own metrics (mean per reply job); "
        "'other' is job - model (retrieval, database, Twilio); CPU/reply is the web process' "
        "and workers' CPU time over the replies sent. A configuration stops at the first step "
        f"with under {BROKEN_SHARE:.0%} accepted or answered.\n\n"
        + table(configs, own)
        + f"\n\n![S6](benchmarks/{name}.png)\n"
    )
    title = "S6: end to end" + (f" ({label})" if label else "")
    harness.write_report(name, title, command, body, data, docs=docs)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short step, 1 worker (< 60 s)")
    parser.add_argument("--workers", help="comma-separated worker counts, e.g. 1,2,4")
    parser.add_argument("--rates", help="comma-separated offered rates (msgs/s)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the product")
    parser.add_argument("--label", default="", help="a variant's name (its own files, section)")
    args = parser.parse_args(argv)
    run(
        args.quick,
        workers=[int(x) for x in args.workers.split(",")] if args.workers else None,
        rates=[float(x) for x in args.rates.split(",")] if args.rates else None,
        env=dict(item.split("=", 1) for item in args.env),
        label=args.label,
    )


if __name__ == "__main__":
    main()
