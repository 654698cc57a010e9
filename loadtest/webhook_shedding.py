"""Open-loop signed webhooks at a fixed rate (as Twilio sends) against one `hotelchat serve` on
embedded PostgreSQL and Redis: statuses, latency of 200s and 503s, messages stored, duplicates.
A quick check of the load shedding, not a benchmark with a baseline (see docs/benchmarks.md).

    .venv/bin/python -m loadtest.webhook_shedding RATE SECONDS [WEBHOOK_MAX_IN_FLIGHT]
"""

import asyncio
import base64
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.embedded import free_port, start_postgres, start_redis
from hotelchat.adapters.postgres.migrate import migrate
from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.adapters.twilio import sign
from hotelchat.entrypoints.simulate import inbound_params

KEY = base64.urlsafe_b64encode(b"hotelchat-tests-encryption-key!!").decode()
CIPHER = TokenCipher([KEY])
ACCOUNT, TOKEN, NUMBER = "AC" + "1" * 32, "c" * 32, "+15550100009"


async def provision(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    prov = Provisioning(conn, CIPHER)
    await prov.ensure_chain("bench", "Bench")
    await prov.create_hotel(
        chain_slug="bench", slug="bench-hotel", name="Bench Hotel", description="x"
    )
    await prov.add_whatsapp_sender(
        hotel_slug="bench-hotel", phone_number=NUMBER, account_sid=ACCOUNT, auth_token=TOKEN
    )
    await conn.close()


async def load(base: str, rate: float, seconds: float, admin_dsn: str) -> None:
    url = base + "/webhooks/twilio/whatsapp"
    results: list[tuple[int | str, float, str]] = []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=15), connector=aiohttp.TCPConnector(limit=0)
    ) as http:

        async def one(n: int) -> None:
            params = inbound_params(
                account_sid=ACCOUNT,
                to_number=NUMBER,
                from_number=f"+1555{n % 500:07d}",
                profile_name="G",
                body=f"Q {n}",
            )
            headers = {"X-Twilio-Signature": sign(TOKEN, url, params)}
            t = time.perf_counter()
            status: int | str
            try:
                async with http.post(url, data=params, headers=headers) as r:
                    await r.read()
                    status = r.status
            except Exception as e:
                status = type(e).__name__
            results.append((status, time.perf_counter() - t, params["MessageSid"]))

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    conn = await asyncpg.connect(admin_dsn)
    rows = await conn.fetch(
        "SELECT provider_sid, count(*) n FROM messages WHERE direction='inbound' GROUP BY 1"
    )
    await conn.close()
    stored = {r["provider_sid"]: r["n"] for r in rows}
    counts = collections.Counter(s for s, _, _ in results)
    ok = sorted(d for s, d, _ in results if s == 200)
    accepted = {sid for s, _, sid in results if s == 200}

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")

    shed = sorted(d for s, d, _ in results if s == 503)
    print(f"503s p50 {pct(shed, 0.5):.0f} ms p99 {pct(shed, 0.99):.0f} ms")
    print(
        f"rate {rate}/s for {seconds}s: {dict(counts)}; "
        f"200s p50 {pct(ok, 0.5):.0f} ms p99 {pct(ok, 0.99):.0f} ms; "
        f"accepted stored once: {all(stored.get(s) == 1 for s in accepted)}; "
        f"stored {len(stored)}; dupes {sum(1 for v in stored.values() if v > 1)}"
    )


def main() -> None:
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    root = Path(tempfile.mkdtemp(prefix="hc-shed-"))
    pg = start_postgres(root / "pg", database="bench")
    redis = start_redis(root / "redis", persist=False)
    port = free_port()
    server = None
    try:
        asyncio.run(migrate(pg.admin_dsn, pg.app_dsn, pg.operator_dsn, CIPHER))
        asyncio.run(provision(pg.admin_dsn))
        env = dict(os.environ) | {
            "DATABASE_URL": pg.app_dsn,
            "REDIS_URL": redis.url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "LOG_LEVEL": "ERROR",
            "ENCRYPTION_KEYS": KEY,
            "SECRET_KEY": "s" * 40,
        }
        if len(sys.argv) > 3:
            env["WEBHOOK_MAX_IN_FLIGHT"] = sys.argv[3]
        server = subprocess.Popen(
            [sys.executable, "-m", "hotelchat", "serve"], env=env, stderr=subprocess.DEVNULL
        )
        import urllib.request

        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        asyncio.run(load(f"http://127.0.0.1:{port}", rate, seconds, pg.admin_dsn))
    finally:
        if server:
            server.terminate()
            server.wait(20)
        redis.stop()
        pg.stop()


main()
