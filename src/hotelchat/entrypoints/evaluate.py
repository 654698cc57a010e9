"""`hotelchat eval retrieval`: how often the production retrieval finds the knowledge-base entry
that answers a guest's question, per language, on the question files in `evals/retrieval/`.

It measures the code the reply job runs, not a re-implementation: the demo hotel Amapola Resort is
seeded by `services.demo.seed_demo` into a throwaway embedded PostgreSQL (migrated like any other),
its knowledge base embedded by `services.knowledge.embed_pending` and every question answered by
`services.knowledge.retrieve` on a container `bootstrap.build` wired, with the embeddings the
settings choose (EMBEDDINGS_PROVIDER). DATABASE_URL and REDIS_URL are ignored on purpose: the eval
seeds a demo chain with agent logins, which has no business in a real database.

A question file has one JSON object per line: `id`, `language` (ISO 639 code), `question` and
`answer_title`, the title of the entry that answers it; a question without `answer_title` is one
the knowledge base does not answer, and counts only for how often retrieval is (wrongly)
confident enough to answer it alone (`Retrieval.confident`). See evals/retrieval/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hotelchat.adapters.postgres.provisioning import Provisioning, open_provisioning
from hotelchat.config import Settings
from hotelchat.domain.errors import InvalidInput, Unavailable
from hotelchat.services import knowledge
from hotelchat.services.demo import HOTELS, seed_demo
from hotelchat.services.ports import Deps, Embeddings

HOTEL_SLUG = "amapola-resort"
DEFAULT_FILES = ("questions.jsonl", "holdout.jsonl", "unanswerable.jsonl")
MAX_FILE_BYTES = 2_000_000
MAX_QUESTIONS = 10_000
# `knowledge.retrieve` embeds at most this many characters of a question.
MAX_QUESTION_CHARS = 2000
FIELDS = frozenset({"id", "language", "question", "answer_title"})
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class QuestionFileError(InvalidInput):
    """A question file is unreadable or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Question:
    """One guest question; `answer_title` None when the knowledge base does not answer it."""

    id: str
    language: str
    question: str
    answer_title: str | None


@dataclass(frozen=True, slots=True)
class QuestionFile:
    path: Path
    questions: tuple[Question, ...]

    @property
    def name(self) -> str:
        return display_path(self.path)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `knowledge.retrieve` returned for one question: titles and scores best first, the
    method (`vector`, or `text` when it fell back to full-text search) and `confident`."""

    question: Question
    titles: tuple[str, ...]
    scores: tuple[float, ...]
    method: str
    confident: bool
    features: tuple[float, ...] = ()

    @property
    def rank(self) -> int | None:
        """1-based position of the expected entry among the returned ones, None if absent."""
        expected = self.question.answer_title
        return self.titles.index(expected) + 1 if expected in self.titles else None


@dataclass(frozen=True, slots=True)
class Recall:
    """Recall of a group of answerable questions; `alone` counts those `Retrieval.confident`
    would answer with the best passage alone, `alone_wrong` those of them whose best passage is
    not the expected entry."""

    questions: int
    at_1: float
    at_3: float
    alone: int
    alone_wrong: int

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Recall:
        n = len(outcomes)
        return cls(
            questions=n,
            at_1=sum(o.rank == 1 for o in outcomes) / n,
            at_3=sum(o.rank is not None and o.rank <= 3 for o in outcomes) / n,
            alone=sum(o.confident for o in outcomes),
            alone_wrong=sum(o.confident and o.rank != 1 for o in outcomes),
        )


@dataclass(frozen=True, slots=True)
class FileResult:
    """The outcomes of one question file."""

    name: str
    outcomes: tuple[Outcome, ...]

    @property
    def answerable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.question.answer_title is not None]

    @property
    def unanswerable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.question.answer_title is None]

    def by_language(self) -> dict[str, Recall]:
        """Recall per language, English first, then alphabetically."""
        languages = sorted({o.question.language for o in self.answerable}, key=_language_order)
        return {
            lang: Recall.of([o for o in self.answerable if o.question.language == lang])
            for lang in languages
        }

    def overall(self) -> Recall | None:
        return Recall.of(self.answerable) if self.answerable else None

    def misses(self) -> list[Outcome]:
        """Answerable questions whose expected entry is not ranked first."""
        return [o for o in self.answerable if o.rank != 1]


@dataclass(frozen=True, slots=True)
class Targets:
    """The issue's targets, checked on every file with answerable questions (fractions 0-1);
    `unanswerable_alone` caps the share of unanswerable questions answered alone (None: no cap).
    """

    recall_at_1: float = 0.85
    recall_at_3: float = 0.95
    language_recall_at_3: float = 0.85
    unanswerable_alone: float | None = None

    def missed(self, result: FileResult) -> list[str]:
        """One line per target `result` misses; empty when all are met."""
        found = []
        overall = result.overall()
        if overall is not None:
            if overall.at_1 < self.recall_at_1:
                found.append(f"{result.name}: recall@1 {overall.at_1:.3f} < {self.recall_at_1}")
            if overall.at_3 < self.recall_at_3:
                found.append(f"{result.name}: recall@3 {overall.at_3:.3f} < {self.recall_at_3}")
            for lang, recall in result.by_language().items():
                if recall.at_3 < self.language_recall_at_3:
                    found.append(
                        f"{result.name}: {lang} recall@3 {recall.at_3:.3f} "
                        f"< {self.language_recall_at_3}"
                    )
        unanswerable = result.unanswerable
        if self.unanswerable_alone is not None and unanswerable:
            share = sum(o.confident for o in unanswerable) / len(unanswerable)
            if share > self.unanswerable_alone:
                found.append(
                    f"{result.name}: unanswerable questions answered alone {share:.3f} "
                    f"> {self.unanswerable_alone}"
                )
        return found


@dataclass(frozen=True, slots=True)
class Report:
    """The results of every file, with what was measured and how long it took (seconds)."""

    hotel_slug: str
    entries: int
    embeddings_model: str
    vector_storage: str
    files: tuple[FileResult, ...]
    timings: dict[str, float] = field(default_factory=dict)

    def missed(self, targets: Targets, gated: Collection[str] | None = None) -> list[str]:
        """The targets missed by the files named in `gated` (every file when None)."""
        return [
            line
            for result in self.files
            if gated is None or result.name in gated
            for line in targets.missed(result)
        ]


# --- question files ---------------------------------------------------------------------------


def demo_titles() -> list[str]:
    """The titles of the eval hotel's knowledge base, as `seed_demo` writes them."""
    (hotel,) = [h for h in HOTELS if h.slug == HOTEL_SLUG]
    return [title for title, _ in hotel.knowledge]


def default_paths() -> list[Path]:
    """evals/retrieval/{questions,holdout,unanswerable}.jsonl of the source checkout this module
    is in, else of the current directory. Raises `QuestionFileError` when they are not there."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        paths = [root / "evals" / "retrieval" / name for name in DEFAULT_FILES]
        if all(path.is_file() for path in paths):
            return paths
    raise QuestionFileError(
        "no evals/retrieval/ here: run from the repository root or pass --questions FILE"
    )


def display_path(path: Path) -> str:
    """`path` relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_questions(path: Path, titles: Collection[str]) -> QuestionFile:
    """Read and check a question file against the knowledge base's `titles`.

    Raises `QuestionFileError` naming the file and line: unreadable or not UTF-8, larger than
    `MAX_FILE_BYTES`, no questions, a line that is not a JSON object, a missing, unknown or
    malformed field, a question longer than `MAX_QUESTION_CHARS`, a repeated id, or an
    `answer_title` that is no entry's title."""
    name = display_path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise QuestionFileError(f"{name}: larger than {MAX_FILE_BYTES // 1_000_000} MB")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise QuestionFileError(f"{name}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise QuestionFileError(f"{name}: not UTF-8 text") from None
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(questions) == MAX_QUESTIONS:
            raise QuestionFileError(f"{name}: more than {MAX_QUESTIONS} questions")
        question = _parse_line(line, f"{name} line {number}", titles)
        if question.id in seen:
            raise QuestionFileError(
                f"{name} line {number}: id {question.id!r} is also on line {seen[question.id]}"
            )
        seen[question.id] = number
        questions.append(question)
    if not questions:
        raise QuestionFileError(f"{name}: no questions")
    return QuestionFile(path, tuple(questions))


def _parse_line(line: str, where: str, titles: Collection[str]) -> Question:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise QuestionFileError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(row, dict):
        raise QuestionFileError(f"{where}: not a JSON object")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise QuestionFileError(
            f"{where}: unknown field {unknown[0]!r} (fields: id, language, question, answer_title)"
        )
    for key in ("id", "language", "question"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise QuestionFileError(f"{where}: {key!r} is missing or not a non-empty string")
    if not _ID.fullmatch(row["id"]):
        raise QuestionFileError(f"{where}: id {row['id']!r} is not letters, digits, - _ .")
    if not _LANGUAGE.fullmatch(row["language"]):
        raise QuestionFileError(
            f"{where}: language {row['language']!r} is not a lowercase ISO 639 code"
        )
    if len(row["question"]) > MAX_QUESTION_CHARS:
        raise QuestionFileError(f"{where}: the question is over {MAX_QUESTION_CHARS} characters")
    answer = row.get("answer_title")
    if answer is not None:
        if not isinstance(answer, str):
            raise QuestionFileError(f"{where}: 'answer_title' is not a string")
        if answer not in titles and knowledge.split_heading(answer)[0] in titles:
            # written as the heading (`wifi: Internet access`); the import keeps the title
            answer = knowledge.split_heading(answer)[0]
        if answer not in titles:
            raise QuestionFileError(
                f"{where}: no knowledge-base entry is titled {answer!r} "
                f"(titles: {', '.join(sorted(titles))})"
            )
    return Question(row["id"], row["language"], row["question"], answer)


def load_files(paths: Iterable[Path]) -> list[QuestionFile]:
    """`load_questions` for each path against the demo hotel's titles; raises
    `QuestionFileError` at the first bad line."""
    titles = set(demo_titles())
    return [load_questions(path, titles) for path in paths]


@dataclass(frozen=True, slots=True)
class KnowledgeFile:
    """A hotel's knowledge-base file as `hotelchat kb import` takes it (Markdown or CSV), with
    the entries `knowledge.parse_file` reads from it."""

    path: Path
    content: bytes
    entries: tuple[tuple[str, str, str], ...]

    @property
    def titles(self) -> set[str]:
        return {title for title, _, _ in self.entries}


@dataclass(frozen=True, slots=True)
class Subject:
    """One hotel to measure: the demo hotel (`knowledge` None) or one imported from a file,
    with its question files; `gated` names the files the targets apply to."""

    slug: str
    knowledge: KnowledgeFile | None
    files: tuple[QuestionFile, ...]
    gated: frozenset[str]


def load_knowledge(path: Path) -> KnowledgeFile:
    """Read a knowledge-base file through `knowledge.parse_file`, the import's own parser.
    Raises `QuestionFileError` naming the file (and the line or row at fault)."""
    name = display_path(path)
    try:
        if path.stat().st_size > knowledge.MAX_IMPORT_BYTES:
            raise QuestionFileError(f"{name}: larger than {knowledge.MAX_IMPORT_BYTES // 1000} kB")
        content = path.read_bytes()
    except OSError as exc:
        raise QuestionFileError(f"{name}: cannot read it ({exc.strerror})") from None
    try:
        entries = knowledge.parse_file(path.name, content)
    except InvalidInput as exc:
        raise QuestionFileError(f"{name}: {exc.message}") from None
    return KnowledgeFile(path, content, tuple(entries))


def load_subject(
    knowledge_path: Path,
    questions: Sequence[Path],
    unanswerable: Sequence[Path] = (),
    *,
    slug: str | None = None,
    gated: Collection[Path] | None = None,
) -> Subject:
    """A hotel imported from `knowledge_path`, asked the questions of `questions` (checked
    against its titles) and `unanswerable` (which must have no `answer_title`). Every file is
    gated unless `gated` names some. Raises `QuestionFileError`."""
    kb = load_knowledge(knowledge_path)
    files = [load_questions(path, kb.titles) for path in questions]
    for path in unanswerable:
        loaded = load_questions(path, kb.titles)
        answered = [q.id for q in loaded.questions if q.answer_title is not None]
        if answered:
            raise QuestionFileError(
                f"{loaded.name}: an unanswerable question has an answer_title ({answered[0]})"
            )
        files.append(loaded)
    names = {f.name for f in files} if gated is None else {display_path(p) for p in gated}
    name = slug or _slug(knowledge_path.parent.name if knowledge_path.stem == "knowledge"
                         else knowledge_path.stem)  # fmt: skip
    return Subject(name, kb, tuple(files), frozenset(names))


def load_hotel_folder(folder: Path, *, holdout: bool = False) -> Subject:
    """A hotel of evals/retrieval/hotels/: `knowledge.md` (or `.csv`), `questions.jsonl`,
    `unanswerable.jsonl` when present and, with `holdout`, `holdout.jsonl`; the targets gate
    `questions.jsonl` and the holdout. Raises `QuestionFileError`."""
    kb_path = next(
        (folder / n for n in ("knowledge.md", "knowledge.csv") if (folder / n).is_file()),
        folder / "knowledge.md",
    )
    questions = [folder / "questions.jsonl"]
    if holdout:
        questions.append(folder / "holdout.jsonl")
    unanswerable = [p for p in [folder / "unanswerable.jsonl"] if p.is_file()]
    return load_subject(kb_path, questions, unanswerable, slug=_slug(folder.name),
                        gated=questions)  # fmt: skip


def demo_subject(paths: Sequence[Path] | None = None) -> Subject:
    """The demo hotel with `paths` (gated all), or with the default files (the eval set gated)."""
    files = load_files(paths or default_paths())
    gated = {f.name for f in files} if paths else default_gate(files)
    return Subject(HOTEL_SLUG, None, tuple(files), frozenset(gated))


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug or "hotel"


# --- measuring --------------------------------------------------------------------------------


async def prepare_demo_hotel(deps: Deps, prov: Provisioning) -> int:
    """Seed the demo chain (if missing) and embed the eval hotel's knowledge base with
    `knowledge.embed_pending`; returns the hotel's id. Raises `Unavailable` when the seeded
    entries differ from the demo's or some remain without vectors, `ModelError` when the
    embeddings model fails."""
    await seed_demo(prov, {})
    hotel_id = await deps.store.route_hotel(HOTEL_SLUG)
    if hotel_id is None:
        raise Unavailable(f"the demo hotel {HOTEL_SLUG} was not seeded")
    entries = await deps.knowledge_base.entries(hotel_id)
    if sorted(e.title for e in entries) != sorted(demo_titles()):
        raise Unavailable(f"{HOTEL_SLUG}'s knowledge base is not the demo's; use a fresh database")
    await knowledge.embed_pending(deps, hotel_id)
    entries = await deps.knowledge_base.entries(hotel_id)
    if not all(e.embedded for e in entries):
        raise Unavailable(f"some of {HOTEL_SLUG}'s entries could not be embedded")
    return hotel_id


async def prepare_imported_hotel(deps: Deps, prov: Provisioning, subject: Subject) -> int:
    """A fresh hotel (its own tenant, in chain `eval`) whose knowledge base is imported from
    the subject's file by `knowledge.import_file`, the path `hotelchat kb import` takes, and
    embedded with `knowledge.embed_pending`; returns its id. Raises `Unavailable` when some
    entries remain without vectors, `ModelError` when the embeddings model fails."""
    assert subject.knowledge is not None
    await prov.ensure_chain("eval", "Retrieval eval")
    taken = {h.slug for h in await prov.hotels()}
    slug = next(f"eval-{subject.slug}-{n}" for n in range(1, 10_000)
                if f"eval-{subject.slug}-{n}" not in taken)  # fmt: skip
    hotel_id = await prov.create_hotel(chain_slug="eval", slug=slug, name=subject.slug)
    kb = subject.knowledge
    await knowledge.import_file(deps, hotel_id, kb.path.name, kb.content)
    await knowledge.embed_pending(deps, hotel_id, limit=knowledge.MAX_IMPORT_ENTRIES)
    entries = await deps.knowledge_base.entries(hotel_id)
    if len(entries) != len(kb.entries) or not all(e.embedded for e in entries):
        raise Unavailable(f"some of {subject.slug}'s entries could not be imported or embedded")
    return hotel_id


async def evaluate_file(deps: Deps, hotel_id: int, questions: QuestionFile) -> FileResult:
    """Ask `knowledge.retrieve` each question of `questions`, with the reply path's limit (at
    least 3 passages)."""
    limit = max(3, deps.passages_per_prompt)
    outcomes = []
    for question in questions.questions:
        found = await knowledge.retrieve(deps, hotel_id, question.question, limit=limit)
        outcomes.append(
            Outcome(
                question=question,
                titles=tuple(p.title for p in found.passages),
                scores=tuple(p.score for p in found.passages),
                method=found.method,
                confident=found.confident,
                features=found.features(),
            )
        )
    return FileResult(questions.name, tuple(outcomes))


async def evaluate(deps: Deps, prov: Provisioning, files: Sequence[QuestionFile]) -> Report:
    """Seed and embed the demo hotel (`prepare_demo_hotel`), then evaluate every file. `deps`
    and `prov` must reach the same database (the application role and the schema owner)."""
    subject = Subject(HOTEL_SLUG, None, tuple(files), frozenset(f.name for f in files))
    return await evaluate_subject(deps, prov, subject)


async def evaluate_subject(deps: Deps, prov: Provisioning, subject: Subject) -> Report:
    """Prepare the subject's hotel (the demo's seeded, or one imported from its file), then
    evaluate every question file of it."""
    started = time.perf_counter()
    if subject.knowledge is None:
        hotel_id = await prepare_demo_hotel(deps, prov)
        entries = len(demo_titles())
    else:
        hotel_id = await prepare_imported_hotel(deps, prov, subject)
        entries = len(subject.knowledge.entries)
    embedded = time.perf_counter()
    results = [await evaluate_file(deps, hotel_id, f) for f in subject.files]
    done = time.perf_counter()
    embeddings = deps.embeddings
    return Report(
        hotel_slug=subject.slug,
        entries=entries,
        embeddings_model=embeddings.model if embeddings is not None else "none (full-text only)",
        vector_storage=await _vector_storage(prov),
        files=tuple(results),
        timings={
            "seed_and_embed": embedded - started,
            "questions": done - embedded,
            "per_question": (done - embedded)
            / max(1, sum(len(f.questions) for f in subject.files)),
        },
    )


async def _vector_storage(prov: Provisioning) -> str:
    kind = await prov.conn.fetchval(
        """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = 'kb_passages'::regclass AND attname = 'embedding'"""
    )
    return "pgvector" if kind == "vector" else "float8[] arrays (no pgvector)"


async def evaluate_embedded(
    settings: Settings, subjects: Sequence[Subject], *, cache: Path | None = None
) -> list[Report]:
    """`evaluate_subject` of each subject on throwaway embedded PostgreSQL and Redis (in a
    temporary folder, removed afterwards), migrated, with a container built by
    `bootstrap.build` from `settings` with their URLs; with `cache`, passage vectors are kept
    in that SQLite file between runs (`CachedEmbeddings`). Raises `Unavailable` when they do not
    start (the `embedded` extra is needed)."""
    from hotelchat import bootstrap
    from hotelchat.adapters.credentials import TokenCipher, generate_key
    from hotelchat.adapters.embedded import EmbeddedError, start_postgres, start_redis
    from hotelchat.adapters.postgres.migrate import migrate

    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hotelchat-eval-")))
        try:
            postgres = await asyncio.to_thread(start_postgres, root / "pg", "hotelchat_eval")
            stack.push_async_callback(asyncio.to_thread, postgres.stop)
            redis = await asyncio.to_thread(start_redis, root / "redis", persist=False)
            stack.push_async_callback(asyncio.to_thread, redis.stop)
        except (EmbeddedError, ImportError) as exc:
            raise Unavailable(
                f"an embedded server did not start ({exc}); the eval needs the `embedded` extra"
            ) from exc
        await migrate(postgres.admin_dsn, postgres.app_dsn)
        key = generate_key()  # the throwaway database's numbers need one
        local = settings.model_copy(
            update={
                "database_url": SecretStr(postgres.app_dsn),
                "database_admin_url": SecretStr(postgres.admin_dsn),
                "redis_url": SecretStr(redis.url),
                "encryption_keys": SecretStr(key),
            }
        )
        ready = time.perf_counter()
        container = await bootstrap.build(local)
        stack.push_async_callback(container.close)
        prov = await stack.enter_async_context(
            open_provisioning(postgres.admin_dsn, TokenCipher([key]))
        )
        deps = container.deps
        if cache is not None and deps.embeddings is not None:
            cached = CachedEmbeddings(deps.embeddings, cache)
            stack.callback(cached.close)
            deps = dataclasses.replace(deps, embeddings=cached)
        reports = [await evaluate_subject(deps, prov, subject) for subject in subjects]
    for report in reports:
        report.timings["servers"] = ready - started
        report.timings["total"] = time.perf_counter() - started
    return reports


class CachedEmbeddings:
    """`services.ports.Embeddings` that keeps passage vectors in a SQLite file (by model and
    text), so repeated evals of the same knowledge bases embed them once. Questions are not
    cached: their time is what the eval measures. For the eval only."""

    def __init__(self, inner: Embeddings, path: Path) -> None:
        import sqlite3

        self._inner = inner
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS passages (key TEXT PRIMARY KEY, vector TEXT NOT NULL)"
        )

    @property
    def model(self) -> str:
        return self._inner.model

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model}\0{text}".encode()).hexdigest()

    async def passages(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [self._key(t) for t in texts]
        found: dict[str, list[float]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, vector in self._db.execute(
                f"SELECT key, vector FROM passages WHERE key IN ({marks})",  # noqa: S608
                chunk,
            ):
                found[key] = json.loads(vector)
        missing = [(k, t) for k, t in zip(keys, texts, strict=True) if k not in found]
        if missing:
            vectors = await self._inner.passages([t for _, t in missing])
            for (key, _), vector in zip(missing, vectors, strict=True):
                found[key] = vector
            self._db.executemany(
                "INSERT OR REPLACE INTO passages VALUES (?, ?)",
                [(k, json.dumps(found[k])) for k, _ in missing],
            )
            self._db.commit()
        return [found[k] for k in keys]

    async def query(self, text: str) -> list[float]:
        return await self._inner.query(text)

    def close(self) -> None:
        self._db.close()


# --- output -----------------------------------------------------------------------------------


def default_gate(files: Sequence[QuestionFile]) -> set[str]:
    """The files the targets apply to when none are named: the eval set (`questions.jsonl`).
    The holdout is reported, not gated: it shows how well the keywords chosen on the eval set
    carry over to questions they were not chosen on, and missing a target there is a finding,
    not a regression."""
    return {f.name for f in files if f.path.name == DEFAULT_FILES[0]}


def render(
    report: Report,
    targets: Targets,
    *,
    misses: bool = False,
    gated: Collection[str] | None = None,
) -> str:
    """The report as Markdown tables (per file, per language), with the targets' verdict and,
    with `misses`, every answerable question whose entry is not ranked first."""
    lines = [
        f"Retrieval eval: {report.hotel_slug} ({report.entries} entries), "
        f"{report.embeddings_model}, vectors in {report.vector_storage}",
        "recall@k: the expected entry among the first k passages `knowledge.retrieve` returns; "
        "answered alone: `Retrieval.confident`",
    ]
    for result in report.files:
        lines += ["", f"{result.name}: {len(result.outcomes)} questions"]
        overall = result.overall()
        if overall is not None:
            lines += [
                "",
                "| language | questions | recall@1 | recall@3 | answered alone | of which wrong |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            rows = [*result.by_language().items(), ("all", overall)]
            lines += [
                f"| {lang} | {r.questions} | {r.at_1:.3f} | {r.at_3:.3f} | {r.alone} | "
                f"{r.alone_wrong} |"
                for lang, r in rows
            ]
        unanswerable = result.unanswerable
        if unanswerable:
            alone = sum(o.confident for o in unanswerable)
            lines += [
                "",
                f"unanswerable: {len(unanswerable)} questions, answered alone (wrongly "
                f"confident) {alone} ({alone / len(unanswerable):.2f})",
            ]
            lines += [
                f"  {o.question.id} {o.question.question!r}: {o.titles[0]!r} ({o.scores[0]:.3f})"
                for o in unanswerable
                if o.confident
            ]
        fallbacks = sum(o.method != "vector" for o in result.outcomes)
        if fallbacks:
            lines.append(f"warning: {fallbacks} questions fell back to full-text search")
        if misses and result.misses():
            lines += ["", "not ranked first:"]
            lines += [_miss(o) for o in result.misses()]
    missed = report.missed(targets, gated)
    scope = "each file" if gated is None else ", ".join(sorted(gated)) or "no file"
    lines += [
        "",
        f"targets, {scope}: recall@1 >= {targets.recall_at_1}, recall@3 >= "
        f"{targets.recall_at_3}, every language recall@3 >= {targets.language_recall_at_3}"
        + (
            f", unanswerable answered alone <= {targets.unanswerable_alone}"
            if targets.unanswerable_alone is not None
            else ""
        )
        + (": met" if not missed else ": MISSED"),
        *(f"  missed: {line}" for line in missed),
    ]
    t = report.timings
    if "total" in t:
        lines.append(
            f"time: {t['total']:.1f} s (servers and migrations {t['servers']:.1f} s, seed and "
            f"embed {t['seed_and_embed']:.1f} s, questions {t['questions']:.1f} s, "
            f"{t['per_question'] * 1000:.0f} ms each)"
        )
    return "\n".join(lines)


def _miss(o: Outcome) -> str:
    where = f"at rank {o.rank}" if o.rank is not None else f"not in the top {len(o.titles)}"
    return (
        f"  {o.question.id} [{o.question.language}] {o.question.question!r}: got "
        f"{o.titles[0]!r} ({o.scores[0]:.3f}), want {o.question.answer_title!r} {where}"
    )


def to_json(
    report: Report, targets: Targets, gated: Collection[str] | None = None
) -> dict[str, Any]:
    """The report as JSON-ready data: per file, recall per language and overall, unanswerable
    questions answered alone, the misses, and the targets' verdict."""

    def recall(r: Recall) -> dict[str, Any]:
        return {
            "questions": r.questions,
            "recall_at_1": round(r.at_1, 4),
            "recall_at_3": round(r.at_3, 4),
            "answered_alone": r.alone,
            "answered_alone_wrong": r.alone_wrong,
        }

    def outcome(o: Outcome) -> dict[str, Any]:
        return {
            "id": o.question.id,
            "language": o.question.language,
            "question": o.question.question,
            "expected": o.question.answer_title,
            "rank": o.rank,
            "top": list(o.titles[:3]),
            "scores": [round(s, 4) for s in o.scores[:3]],
            "answered_alone": o.confident,
            "method": o.method,
            "features": [round(f, 5) for f in o.features],
        }

    files = []
    for result in report.files:
        overall = result.overall()
        unanswerable = result.unanswerable
        files.append(
            {
                "file": result.name,
                "questions": len(result.outcomes),
                "overall": recall(overall) if overall is not None else None,
                "languages": {lang: recall(r) for lang, r in result.by_language().items()},
                "unanswerable": {
                    "questions": len(unanswerable),
                    "answered_alone": sum(o.confident for o in unanswerable),
                    "answered_alone_ids": [o.question.id for o in unanswerable if o.confident],
                },
                "text_fallbacks": sum(o.method != "vector" for o in result.outcomes),
                "misses": [outcome(o) for o in result.misses()],
                "outcomes": [outcome(o) for o in result.outcomes],
            }
        )
    missed = report.missed(targets, gated)
    return {
        "hotel": report.hotel_slug,
        "entries": report.entries,
        "embeddings_model": report.embeddings_model,
        "vector_storage": report.vector_storage,
        "files": files,
        "targets": {
            "recall_at_1": targets.recall_at_1,
            "recall_at_3": targets.recall_at_3,
            "language_recall_at_3": targets.language_recall_at_3,
            "unanswerable_answered_alone": targets.unanswerable_alone,
        },
        "gated_files": sorted(gated) if gated is not None else [r.name for r in report.files],
        "targets_met": not missed,
        "missed": missed,
        "seconds": {k: round(v, 3) for k, v in report.timings.items()},
    }


def pooled(reports: Sequence[Report]) -> list[FileResult]:
    """The outcomes of same-named question files (questions.jsonl, holdout.jsonl, …) of every
    hotel pooled into one result per name, first-seen order."""
    groups: dict[str, list[Outcome]] = {}
    for report in reports:
        for result in report.files:
            groups.setdefault(Path(result.name).name, []).extend(result.outcomes)
    return [FileResult(f"all hotels, {name}", tuple(o)) for name, o in groups.items()]


def render_all(
    reports: Sequence[Report],
    targets: Targets,
    gated: Sequence[Collection[str]],
    *,
    misses: bool = False,
) -> str:
    """`render` of each hotel's report, then, for several, the pooled tables (`pooled`)."""
    parts = [
        render(r, targets, misses=misses, gated=g) for r, g in zip(reports, gated, strict=True)
    ]
    if len(reports) > 1:
        pool = Report("all hotels", sum(r.entries for r in reports), reports[0].embeddings_model,
                      reports[0].vector_storage, tuple(pooled(reports)))  # fmt: skip
        parts.append(render(pool, targets, gated=[f.name for f in pool.files]))
    return "\n\n".join(parts)


def to_json_all(
    reports: Sequence[Report], targets: Targets, gated: Sequence[Collection[str]]
) -> dict[str, Any]:
    """`to_json` of one report as it is; of several, {"hotels": [...], "pooled": ...,
    "targets_met", "missed"}."""
    if len(reports) == 1:
        return to_json(reports[0], targets, gated[0])
    hotels = [to_json(r, targets, g) for r, g in zip(reports, gated, strict=True)]
    pool = Report("all hotels", sum(r.entries for r in reports), reports[0].embeddings_model,
                  reports[0].vector_storage, tuple(pooled(reports)))  # fmt: skip
    missed = [line for h in hotels for line in h["missed"]]
    return {
        "hotels": hotels,
        "pooled": to_json(pool, targets, [f.name for f in pool.files]),
        "targets_met": not missed,
        "missed": missed,
    }


def _language_order(language: str) -> tuple[bool, str]:
    return (language != "en", language)
