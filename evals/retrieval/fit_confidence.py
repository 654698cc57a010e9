# ruff: noqa: T201  (a report: printing is its output)
"""Fit the no-model confidence rule (`knowledge.CONFIDENCE_MODEL`, `CONFIDENCE_MIN`) on the
tuning question sets, from what `hotelchat eval retrieval --json` measured.

A logistic regression (scikit-learn) of `Retrieval.features` (best score, its lead over the
next entry, the lead of its head cosine, the lead of its best passage cosine, whether head and
passage agree) predicts whether the best passage is the entry that answers the question; a
question the knowledge base does not answer is a negative. The threshold is the lowest
probability at which, on the tuning sets, fewer than `--max-wrong` of the answerable
questions are answered alone wrongly and at most `--max-unanswerable` of the unanswerable ones
are answered alone. Holdouts must not be in the input.

    H=evals/retrieval/hotels
    .venv/bin/hotelchat eval retrieval --json --demo --questions evals/retrieval/questions.jsonl \\
        --questions evals/retrieval/unanswerable.jsonl --hotel $H/hotel-lisboa-tejo \\
        --hotel $H/pension-alpina --hotel $H/costa-brava-resort > /tmp/tuning.json
    .venv/bin/python evals/retrieval/fit_confidence.py /tmp/tuning.json

It prints the two lines to put in services/knowledge.py, and the figures on the tuning sets.
Needs scikit-learn (the `eval` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression


def outcomes(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for hotel in data.get("hotels", [data]):
        for file in hotel["files"]:
            if "holdout" in file["file"]:
                raise SystemExit(f"{file['file']}: holdouts are not for fitting")
            for o in file["outcomes"]:
                if o["method"] == "vector" and o["features"]:
                    found.append(o | {"hotel": hotel["hotel"]})
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path, help="hotelchat eval retrieval --json output")
    parser.add_argument("--max-wrong", type=float, default=0.005,
                        help="share of answerable questions answered alone wrongly")  # fmt: skip
    parser.add_argument("--max-unanswerable", type=float, default=0.05,
                        help="share of unanswerable questions answered alone")  # fmt: skip
    args = parser.parse_args()
    rows = outcomes(args.results)
    x = np.asarray([r["features"] for r in rows], dtype=float)
    right = np.asarray([r["expected"] is not None and r["rank"] == 1 for r in rows])
    answerable = np.asarray([r["expected"] is not None for r in rows])
    # Standardised for the fit (the features differ in scale by 10x), then folded back into
    # coefficients of the raw features, which is what the app computes.
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=10_000).fit((x - mean) / std, right)
    weights = model.coef_[0] / std
    intercept = float(model.intercept_[0] - (model.coef_[0] * mean / std).sum())
    p = 1 / (1 + np.exp(-(intercept + x @ weights)))
    n_answerable, n_unanswerable = int(answerable.sum()), int((~answerable).sum())
    chosen = None
    for threshold in np.round(np.arange(0.30, 0.999, 0.005), 3):
        alone = p >= threshold
        wrong = int((alone & answerable & ~right).sum())
        unanswered = int((alone & ~answerable).sum())
        if wrong < args.max_wrong * n_answerable and unanswered <= (
            args.max_unanswerable * n_unanswerable
        ):
            chosen = float(threshold)
            break
    if chosen is None:
        raise SystemExit("no threshold meets the limits")
    alone = p >= chosen
    coefficients = (intercept, *(float(c) for c in weights))
    print("CONFIDENCE_MODEL = (" + ", ".join(f"{c:.4f}" for c in coefficients) + ")")
    print(f"CONFIDENCE_MIN = {chosen}")
    print()
    print(f"tuning sets: {n_answerable} answerable, {n_unanswerable} unanswerable questions")
    for hotel in sorted({r["hotel"] for r in rows}):
        mine = np.asarray([r["hotel"] == hotel for r in rows])
        a, x_mine = mine & answerable, mine & ~answerable
        kept, wrong = int((alone & a).sum()), int((alone & a & ~right).sum())
        print(
            f"  {hotel}: answered alone {kept}/{int(a.sum())} ({kept / max(1, a.sum()):.2f}), "
            f"wrongly {wrong}, unanswerable alone {int((alone & x_mine).sum())}/{int(x_mine.sum())}"
        )
    print(
        f"  all: answered alone {int((alone & answerable).sum())}/{n_answerable} "
        f"({(alone & answerable).sum() / n_answerable:.3f}), wrongly "
        f"{int((alone & answerable & ~right).sum())} "
        f"({(alone & answerable & ~right).sum() / n_answerable:.3f}), of those ranked right "
        f"{int((alone & right).sum())}/{int(right.sum())}; unanswerable alone "
        f"{int((alone & ~answerable).sum())}/{n_unanswerable}"
    )


if __name__ == "__main__":
    main()
