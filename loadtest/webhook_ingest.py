"""Benchmark: how long the inbound WhatsApp webhook takes to verify, store, commit and queue a
message, next to a baseline in the same run.

Baseline: `GET /healthz` on the same server (the floor: HTTP parsing, routing, a JSON response).
Measured: `POST /webhooks/twilio/whatsapp` with a new, signed message each time (signature check,
routing, guest/conversation/message upsert in one transaction, arq enqueue), and a replay of an
already-stored MessageSid. Requests go one at a time (latency) and 16 at a time (throughput) from
this process to one `hotelchat serve` process. No worker runs, so nothing else competes for the CPU.

Run:  .venv/bin/python -m loadtest.webhook_ingest [--requests 2000]
Writes the table to stdout; docs/benchmarks.md holds the last recorded run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from hotelchat.adapters.embedded import free_port, start_postgres, start_redis
from hotelchat.adapters.postgres.migrate import migrate
from hotelchat.adapters.postgres.provisioning import open_provisioning
from hotelchat.adapters.twilio import sign
from hotelchat.entrypoints.simulate import inbound_params

ACCOUNT = "AC" + "0" * 32
TOKEN = "b" * 32
NUMBER = "+15550100009"


async def provision(admin_dsn: str) -> None:
    async with open_provisioning(admin_dsn) as prov:
        await prov.ensure_chain("bench", "Bench")
        await prov.create_hotel(chain_slug="bench", slug="bench-hotel", name="Bench Hotel")
        await prov.add_whatsapp_sender(
            hotel_slug="bench-hotel", phone_number=NUMBER, account_sid=ACCOUNT, auth_token=TOKEN
        )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def measure(
    request: Callable[[aiohttp.ClientSession, int], Awaitable[None]],
    count: int,
    concurrency: int,
) -> tuple[list[float], float]:
    """Latencies in ms and requests per second for `count` requests, `concurrency` at once."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:

        async def run() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                await request(http, i)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, count / elapsed


async def bench(base: str, count: int) -> list[tuple[str, int, list[float], float]]:
    url = base + "/webhooks/twilio/whatsapp"

    async def health(http: aiohttp.ClientSession, _i: int) -> None:
        async with http.get(base + "/healthz") as response:
            assert response.status == 200
            await response.read()

    def params(i: int) -> dict[str, str]:
        return inbound_params(
            account_sid=ACCOUNT,
            to_number=NUMBER,
            from_number=f"+1555{i % 500:07d}",
            profile_name="Bench Guest",
            body=f"Is there parking? ({i})",
        )

    async def post(http: aiohttp.ClientSession, form: dict[str, str]) -> None:
        headers = {"X-Twilio-Signature": sign(TOKEN, url, form)}
        async with http.post(url, data=form, headers=headers) as response:
            assert response.status == 200, await response.text()
            await response.read()

    replayed = params(10**6)

    async def webhook(http: aiohttp.ClientSession, i: int) -> None:
        await post(http, params(i + secrets.randbelow(10**9)))

    async def replay(http: aiohttp.ClientSession, _i: int) -> None:
        await post(http, replayed)

    async with aiohttp.ClientSession() as http:  # warm up: connections, caches, first JIT paths
        for i in range(50):
            await health(http, i)
            await webhook(http, i)
        await replay(http, 0)
    rows = []
    for concurrency in (1, 16):
        for name, request in (
            ("GET /healthz (baseline)", health),
            ("POST webhook, new message", webhook),
            ("POST webhook, replayed MessageSid", replay),
        ):
            latencies, rate = await measure(request, count, concurrency)
            rows.append((name, concurrency, latencies, rate))
    return rows


def report(rows: list[tuple[str, int, list[float], float]]) -> str:
    lines = [
        "| request | concurrency | p50 ms | p95 ms | p99 ms | req/s | p50 ÷ baseline p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    baseline: dict[int, float] = {}
    for name, concurrency, latencies, rate in rows:
        p50 = statistics.median(latencies)
        if "baseline" in name:
            baseline[concurrency] = p50
        lines.append(
            f"| {name} | {concurrency} | {p50:.2f} | {percentile(latencies, 95):.2f} | "
            f"{percentile(latencies, 99):.2f} | {rate:.0f} | {p50 / baseline[concurrency]:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hc-bench-"))
    postgres = start_postgres(root / "pg", database="bench")
    redis = start_redis(root / "redis", persist=False)
    port = free_port()
    server = None
    try:
        asyncio.run(migrate(postgres.admin_dsn, postgres.app_dsn))
        asyncio.run(provision(postgres.admin_dsn))
        env = dict(os.environ) | {
            "DATABASE_URL": postgres.app_dsn,
            "REDIS_URL": redis.url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen([sys.executable, "-m", "hotelchat", "serve"], env=env)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with __import__("urllib.request").request.urlopen(base + "/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        rows = asyncio.run(bench(base, args.requests))
        print(report(rows))
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
