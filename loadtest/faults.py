"""Faults under S6's load: one web process and two workers (defaults) answering webhooks at a
steady offered rate while, a third of the way in, one thing breaks:

- `pg_pause`: every PostgreSQL process SIGSTOPped for 10 s, then SIGCONT,
- `redis_restart`: Redis stopped and started again on the same port (no persistence: its
  queue is lost, which the product's sweeper must make up for),
- `web_kill`: the web process SIGKILLed and started again,
- `worker_kill`: one worker SIGKILLed mid-reply and started again,
- `model_fail`: the model answering 500 to every chat request for 30 s.

For each: accepted messages lost (webhook answered 200, no reply at the end), duplicate sends,
guests without any answer (accepted or not; a guest whose webhook failed is Twilio's to retry,
which this load does not do), and the time to recover (from the fault to the due time of the
last message answered later than `SLOW` seconds). The run waits up to `--drain` seconds for the
answers after the load.

Run:  .venv/bin/python -m loadtest faults [--quick] [--only worker_kill,model_fail]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import psutil

from hotelchat.adapters.embedded import free_port, start_redis
from loadtest import harness
from loadtest.harness import Proc, Stack, fmt, log
from loadtest.s6_end_to_end import Sends, step

NAME = "faults"
SLOW = 5.0  # seconds: a reply later than this counts as affected by the fault
RATE = 2.0  # msgs/s: below the ceiling S6 measured on this machine (1 worker: ~2-5)
FAULTS = ("pg_pause", "redis_restart", "web_kill", "worker_kill", "model_fail")


def postgres_processes(stack: Stack) -> list[psutil.Process]:
    """The embedded PostgreSQL server's processes (postmaster and backends)."""
    data_dir = str(stack.root / "pg")
    found = []
    for p in psutil.process_iter(["cmdline", "name"]):
        with contextlib.suppress(psutil.Error):
            if "postgres" in (p.info["name"] or "") and any(
                data_dir in part for part in p.info["cmdline"] or []
            ):
                found.append(p)
                found.extend(p.children(recursive=True))
    return found


class Deployment:
    """The product under test, with what the faults do to it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.web: Proc = stack.serve()
        self.worker_ports = [free_port(), free_port()]
        self.workers = [stack.worker(port) for port in self.worker_ports]

    def pg_pause(self) -> None:
        procs = postgres_processes(self.stack)
        log(f"  SIGSTOP {len(procs)} PostgreSQL processes for 10 s")
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGSTOP)
        time.sleep(10)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGCONT)

    def redis_restart(self) -> None:
        port = int(self.stack.redis.url.rsplit(":", 1)[1].split("/")[0])
        log(f"  restarting Redis on port {port}")
        self.stack.redis.stop()
        self.stack.redis = start_redis(self.stack.root / "redis2", port=port, persist=False)

    def web_kill(self) -> None:
        log("  SIGKILL the web process, start it again")
        self.web.kill()
        self.web = self.stack.serve()

    def worker_kill(self) -> None:
        log("  SIGKILL worker 1, start it again")
        self.workers[0].kill()
        self.workers[0] = self.stack.worker(self.worker_ports[0])

    def model_fail(self, seconds: float = 30.0) -> None:
        log(f"  the model fails for {seconds:g} s")
        request = urllib.request.Request(
            f"{self.stack.openai_url}/_bench/fail?seconds={seconds}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stop(self) -> None:
        for proc in [self.web, *self.workers]:
            proc.stop()


async def under_fault(
    deployment: Deployment,
    fault: Callable[[], None],
    seconds: float,
    drain: float,
    sends: Sends,
) -> dict[str, Any]:
    url = deployment.stack.web_url + "/webhooks/twilio/whatsapp"
    started = time.time()

    async def inject() -> float:
        await asyncio.sleep(seconds / 3)
        at = time.time()
        await asyncio.to_thread(fault)
        return at

    result: dict[str, Any]
    result, fault_at = await asyncio.gather(
        step(url, RATE, seconds, drain, sends, "under fault"), inject()
    )
    # Due times are seconds from the step's start, which is this function's start (to the ms).
    result["fault_at_s"] = fault_at - started
    result.update(recovery(result["due_latency"], result["fault_at_s"]))
    return result


def recovery(due_latency: list[tuple[float, float | None]], fault_at: float) -> dict[str, float]:
    """Time to recover, in seconds from `fault_at` (the fault's time on the step's clock): until
    the last slow reply arrived, a slow reply being one answered after the fault and later than
    the threshold: `SLOW` seconds, or twice the p99 of the replies that arrived before the fault
    (this machine's normal), whichever is larger. Infinite when an accepted message was never
    answered."""
    before = [lat for due, lat in due_latency if lat is not None and due + lat / 1000 < fault_at]
    threshold = max(SLOW * 1000, 2 * harness.percentile(before, 99) if before else 0.0)
    never = sum(1 for _d, lat in due_latency if lat is None)
    slow_ends = [
        due + lat / 1000
        for due, lat in due_latency
        if lat is not None and due + lat / 1000 >= fault_at and lat > threshold
    ]
    return {
        "slow_threshold_s": threshold / 1000,
        "recovery_s": math.inf if never else max(0.0, max(slow_ends, default=0.0) - fault_at),
        "never_answered": never,
        "worst_reply_s": max((lat for _d, lat in due_latency if lat is not None), default=0.0)
        / 1000,
    }


def run(quick: bool, *, only: list[str] | None = None, docs: Any = harness.DOCS) -> dict[str, Any]:
    faults = only or (["model_fail"] if quick else list(FAULTS))
    seconds, drain = (9.0, 20.0) if quick else (45.0, 150.0)
    start = harness.machine()
    stack = Stack()
    results: dict[str, Any] = {}
    try:
        sends = Sends(stack.twilio_url)
        for name in faults:
            log(f"--- fault: {name}, {RATE:g} msgs/s for {seconds:g} s ---")
            stack.flush_redis()
            deployment = Deployment(stack)
            try:
                action = getattr(deployment, name)
                if name == "model_fail" and quick:
                    action = lambda d=deployment: d.model_fail(3.0)  # noqa: E731
                r = asyncio.run(under_fault(deployment, action, seconds, drain, sends))
            finally:
                deployment.stop()
            results[name] = r
            log(
                f"{name}: accepted {r['accepted']}/{r['webhook']['sent']}, lost {r['missing']}, "
                f"duplicated {r['duplicated']}, recovery {r['recovery_s']:.1f} s"
            )
    finally:
        stack.close()
    data: dict[str, Any] = {
        "scenario": NAME,
        "quick": quick,
        "rate": RATE,
        "seconds": seconds,
        "drain_seconds": drain,
        "machine": start,
        "machine_end": harness.machine(),
        "faults": results,
    }
    render(data, docs)
    return data


def render(data: dict[str, Any], docs: Any = harness.DOCS) -> None:
    """Write the JSON and the Markdown section of a faults run (`data`, as `run` makes it)."""
    results, seconds, drain = data["faults"], data["seconds"], data["drain_seconds"]
    lines = [
        "| fault | webhooks sent | accepted | webhook errors | accepted, unanswered at the end "
        "| duplicates | guests without any answer | reply p99 s | worst reply s "
        "| time to recover s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['webhook']['sent']} | {r['accepted']} | {r['webhook']['outcomes']} | "
            f"{r['missing']} | {r['duplicated']} | {r['webhook']['sent'] - r['answered_any']} | "
            f"{fmt(r['p99_ms'] / 1000, 1)} | {r['worst_reply_s']:.1f} | {r['recovery_s']:.1f} "
            f"(slow: > {r['slow_threshold_s']:.1f} s) |"
        )
    body = (
        f"One web process, two workers, defaults; {data['rate']:g} webhooks/s for {seconds:g} s "
        f"(a new guest each), the fault a third of the way in, then up to {drain:g} s for the "
        f"answers. "
        f"Time to recover: from the fault until the last slow reply arrived (slow: answered "
        f"after the fault and later than {SLOW:g} s or twice the p99 of the replies before it, "
        f"whichever is larger; infinite if any accepted message went unanswered). "
        f"'Unanswered at the end' "
        f"is the exactly-once checker's "
        f"'missing' after the drain: lost, or still waiting on a retry.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    command = ".venv/bin/python -m loadtest faults" + (" --quick" if data["quick"] else "")
    harness.write_report(NAME, "Faults under S6's load", command, body, data, docs=docs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the model failing 3 s (< 60 s)")
    parser.add_argument("--only", help="comma-separated faults: " + ",".join(FAULTS))
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if only and not set(only) <= set(FAULTS):
        parser.error(f"unknown fault in {only}; known: {', '.join(FAULTS)}")
    run(args.quick, only=only)


if __name__ == "__main__":
    main()
