"""Garbage-collector pauses in a process holding what a HotelChat web or worker process holds
after start-up, while it makes request-like garbage for 3 s; as CPython leaves it (`plain`), with
`gc.freeze()` (`freeze`), and with a larger generation-0 threshold too (`freeze+threshold`, what
`entrypoints.process.settle_heap` does). Prints one JSON line: pauses per generation (count,
median, longest, total, in milliseconds).

    .venv/bin/python loadtest/gc_pauses.py web|worker plain|freeze|freeze+threshold
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from typing import Any


def load(kind: str) -> object:
    """What the process holds once started (no servers are contacted)."""
    from hotelchat.config import Settings

    settings = Settings(redis_url="redis://127.0.0.1:1/0", database_url="postgresql://x@h/db",
                        secret_key="s" * 40)  # fmt: skip
    if kind == "web":
        from hotelchat.entrypoints.web.app import create_app, create_asgi

        return create_asgi(create_app(settings))
    from hotelchat.adapters.embeddings import LocalE5Embeddings
    from hotelchat.entrypoints import worker

    asyncio.run(LocalE5Embeddings().query("warm up"))
    return worker


def summary(pauses: list[float]) -> dict[str, float]:
    ordered = sorted(pauses)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 2),
        "total_ms": round(sum(ordered) * 1000, 1),
    }


def main(kind: str, mode: str) -> None:
    from hotelchat.entrypoints.process import settle_heap

    held = load(kind)
    if mode != "plain":
        settle_heap(raise_threshold=mode == "freeze+threshold")
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    began = [0.0]

    def timing(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - began[0])

    gc.callbacks.append(timing)
    kept: list[object] = []
    deadline = time.perf_counter() + 3
    made = 0
    while time.perf_counter() < deadline:
        request = [{"sid": i, "headers": {"a": str(i), "b": [i, i + 1]}, "body": "x" * 20}
                   for i in range(200)]  # fmt: skip
        made += 1
        if made % 10 == 0:
            kept.append(request[:5])  # some survive: sessions, caches
        if len(kept) > 2000:
            kept = kept[1000:]
    gc.collect()  # one full collection, as the collector eventually runs
    gc.callbacks.remove(timing)
    print(json.dumps({
        "process": kind, "mode": mode, "tracked_objects": len(gc.get_objects()),
        "frozen_objects": gc.get_freeze_count(), "threshold": list(gc.get_threshold()),
        **{f"gen{g}": summary(p) for g, p in pauses.items()}, "held": type(held).__name__,
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
