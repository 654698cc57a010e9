"""Benchmark: the cost of knowledge-base retrieval for a 200-entry hotel (issue 10's budget:
p95 retrieval <= 50 ms on 2 cores, import of 200 entries <= 60 s, memory per worker reported).

The knowledge base is the entries of the four eval hotels (evals/retrieval, 143 entries of every
style) repeated under new titles up to `--entries`, written as one Markdown file and imported by
`knowledge.import_file` (the `hotelchat kb import` path) into an embedded PostgreSQL; then
`knowledge.embed_pending` cuts and embeds them (what the worker does). Retrieval is timed as
the reply job calls it (`knowledge.retrieve`, limit 4), next to its baseline in the same run:
the question's embedding alone (`Embeddings.query`). Memory: the process's peak RSS after
everything (the e5 engine loaded), and before loading it.

Run:  OMP_NUM_THREADS=2 .venv/bin/python -m loadtest.retrieval_cost [--entries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from hotelchat import bootstrap
from hotelchat.adapters.credentials import TokenCipher, generate_key
from hotelchat.adapters.embedded import start_postgres, start_redis
from hotelchat.adapters.postgres.migrate import migrate
from hotelchat.adapters.postgres.provisioning import open_provisioning
from hotelchat.config import Settings
from hotelchat.services import knowledge
from hotelchat.services.demo import HOTELS, KEYWORDS

EVALS = Path(__file__).resolve().parents[1] / "evals" / "retrieval"


def knowledge_file(count: int) -> bytes:
    (demo,) = [h for h in HOTELS if h.slug == "amapola-resort"]
    entries = [(t, b, KEYWORDS.get(t, "")) for t, b in demo.knowledge]
    for folder in sorted((EVALS / "hotels").iterdir()):
        if (folder / "knowledge.md").is_file():
            entries += knowledge.parse_file("k.md", (folder / "knowledge.md").read_bytes())
    lines, seen = [], set()
    for n in range(count):
        title, body, keywords = entries[n % len(entries)]
        name, copy = title, 1
        while name.lower() in seen:  # the hotels share a few titles; repeats get a number
            copy += 1
            name = f"{title} ({copy})"
        seen.add(name.lower())
        lines += [f"## {name}", *([f"Keywords: {keywords}"] if keywords else []), body, ""]
    return "\n".join(lines).encode()


def questions() -> list[str]:
    found = []
    for path in [EVALS / "questions.jsonl", *sorted(EVALS.glob("hotels/*/questions.jsonl"))]:
        found += [json.loads(line)["question"] for line in path.read_text().splitlines() if line]
    return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(entries: int, count: int) -> None:
    rss_before = rss_mb()
    with tempfile.TemporaryDirectory(prefix="hotelchat-bench-") as root:
        postgres = start_postgres(Path(root) / "pg", "bench")
        redis = start_redis(Path(root) / "redis", persist=False)
        try:
            await migrate(postgres.admin_dsn, postgres.app_dsn)
            key = generate_key()
            settings = Settings(
                database_url=SecretStr(postgres.app_dsn),
                database_admin_url=SecretStr(postgres.admin_dsn),
                redis_url=SecretStr(redis.url),
                encryption_keys=SecretStr(key),
            )
            container = await bootstrap.build(settings)
            async with open_provisioning(postgres.admin_dsn, TokenCipher([key])) as prov:
                await prov.ensure_chain("bench", "Bench")
                hotel_id = await prov.create_hotel(chain_slug="bench", slug="bench", name="B")
            deps = container.deps
            content = knowledge_file(entries)
            started = time.perf_counter()
            await knowledge.import_file(deps, hotel_id, "kb.md", content)
            imported = time.perf_counter()
            stored = await knowledge.embed_pending(deps, hotel_id, limit=entries)
            embedded = time.perf_counter()
            assert stored == entries, stored
            passages = sum(
                len(knowledge.passages_of(e.title, e.body, e.keywords))
                for e in await deps.knowledge_base.entries(hotel_id)
            )
            asked = questions()[:count]
            assert deps.embeddings is not None
            await knowledge.retrieve(deps, hotel_id, "warm up", limit=4)
            base, full = [], []
            for question in asked:
                t0 = time.perf_counter()
                await deps.embeddings.query(question)
                t1 = time.perf_counter()
                await knowledge.retrieve(deps, hotel_id, question, limit=4)
                t2 = time.perf_counter()
                base.append((t1 - t0) * 1000)
                full.append((t2 - t1) * 1000)
            await container.close()
        finally:
            redis.stop()
            postgres.stop()
    load = Path("/proc/loadavg").read_text().split()[:3]  # noqa: ASYNC240
    print(f"{entries} entries, {passages} passages; load average {' '.join(load)}")
    print(f"import (kb import path): {imported - started:.2f} s")
    print(f"embedding (worker's embed_pending): {embedded - imported:.1f} s")
    print(f"import + embedding: {embedded - started:.1f} s")
    print("| ms per question | p50 | p95 | max |")
    print("|---|---:|---:|---:|")
    for name, values in (("baseline: question embedding alone", base),
                         ("knowledge.retrieve (embedding + PostgreSQL)", full)):  # fmt: skip
        print(f"| {name} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} | "
              f"{max(values):.1f} |")  # fmt: skip
    ratio = percentile(full, 95) / percentile(base, 95)
    print(f"p95 ratio retrieve / embedding alone: {ratio:.2f} ({len(asked)} questions)")
    print(f"peak RSS: {rss_mb():.0f} MB (before loading anything: {rss_before:.0f} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.questions))
