"""A hotel's knowledge base: what its managers write and import, and what the assistant finds
in it for a guest's question.

Retrieval is by multilingual embeddings: hotels write in one language, guests ask in theirs
(recall@3 0.96 against 0.23 for full-text search on evals/retrieval; docs/retrieval.md). Entries
not yet embedded, or a failing embeddings model, fall back to PostgreSQL full-text search.
Combining the two was measured and did not help, so they are not combined.

Imports take Markdown (one `##` heading per entry; an optional first line `Keywords: …`) or CSV
(columns `title`, `body`, optional `keywords`); an entry whose title exists is updated.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from typing import Literal

import structlog

from hotelchat.domain import colloquial
from hotelchat.domain.errors import Forbidden, HotelChatError, InvalidInput, ModelError, Unavailable
from hotelchat.domain.model import Passage
from hotelchat.services.ports import (
    AgentSession,
    Deps,
    JobQueue,
    KnowledgeBase,
    KnowledgeEntry,
    PassageKind,
)

log = structlog.get_logger(__name__)

# Answer from a passage alone (no model) only when the confidence rule says so: a logistic
# regression (intercept, then one weight per `Retrieval.features`) and the probability at which
# the best passage is sent alone, both fitted on the tuning question sets of evals/retrieval by
# evals/retrieval/fit_confidence.py, which prints these lines. They hold for
# multilingual-e5-small and this passage scheme only.
# Fitted on the 455 answerable and 73 unanswerable tuning questions of the four eval hotels
# (fewer than 0.5 % of the answerable answered alone wrongly, at most 5 % of the unanswerable).
CONFIDENCE_MODEL = (-23.7136, 27.5830, 15.7547, 16.7300, 79.6266, 0.3475)
CONFIDENCE_MIN = 0.93
# Full-text search's cover-density rank, scaled to [0, 1).
TEXT_MIN_SCORE = 0.05

MAX_TITLE, MAX_BODY, MAX_KEYWORDS = 200, 8000, 500
MAX_IMPORT_BYTES = 1_000_000
MAX_IMPORT_ENTRIES = 1000
EMBED_BATCH = 32


@dataclass(frozen=True, slots=True)
class Retrieval:
    passages: list[Passage]
    method: Literal["vector", "text"]

    def features(self) -> tuple[float, ...]:
        """What the confidence rule weighs, for vector retrieval (empty for full-text): the best
        entry's score, its lead over the next entry, the lead of its head cosine over the best
        head cosine of the other returned entries, the same for its best passage, and 1.0 when
        the entry with the best head cosine is also the one with the best passage cosine."""
        if self.method != "vector" or not self.passages:
            return ()
        best, others = self.passages[0], self.passages[1:]

        def lead(value: float | None, rest: list[float | None]) -> float:
            found = [v for v in rest if v is not None]
            return (value or 0.0) - max(found) if found else 0.1

        heads = [p.head_score for p in others]
        bests = [p.passage_score for p in others]
        agree = all((best.head_score or 0.0) >= (h or 0.0) for h in heads) and all(
            (best.passage_score or 0.0) >= (b or 0.0) for b in bests
        )
        return (
            best.score,
            best.score - others[0].score if others else 0.1,
            lead(best.head_score, heads),
            lead(best.passage_score, bests),
            1.0 if agree else 0.0,
        )

    def confidence(self) -> float:
        """The calibrated probability (0-1) that the best passage is the entry that answers
        the question: a logistic regression of `features` fitted on evals/retrieval by
        evals/retrieval/fit_confidence.py (`CONFIDENCE_MODEL`). 0 for full-text search."""
        features = self.features()
        if not features:
            return 0.0
        intercept, *weights = CONFIDENCE_MODEL
        z = intercept + sum(w * x for w, x in zip(weights, features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @property
    def confident(self) -> bool:
        """Whether the best passage answers the question well enough to be sent on its own:
        `confidence` at least `CONFIDENCE_MIN` (vector retrieval), or a full-text rank of at
        least `TEXT_MIN_SCORE`."""
        if not self.passages:
            return False
        if self.method == "text":
            return self.passages[0].score >= TEXT_MIN_SCORE
        return self.confidence() >= CONFIDENCE_MIN


async def retrieve(deps: Deps, hotel_id: int, question: str, *, limit: int) -> Retrieval:
    """The knowledge-base entries that best answer `question`, best first."""
    if deps.embeddings is not None and question.strip():
        try:
            vector = await deps.embeddings.query(colloquial.expand(question[:2000]))
            found = await deps.knowledge_base.nearest(
                hotel_id, vector, deps.embeddings.model, limit=limit
            )
        except ModelError as exc:
            log.warning("retrieval.embeddings_failed", hotel_id=hotel_id, error_class=exc.kind)
        else:
            if found:
                return Retrieval(found, "vector")
    return Retrieval(await deps.knowledge.search(hotel_id, question, limit=limit), "text")


async def embed_pending(deps: Deps, hotel_id: int, *, limit: int = 500) -> int:
    """Cut the entries that lack current vectors into passages (`passages_of`) and store the
    passages' vectors; returns how many entries were stored. Raises `ModelError` when the
    embeddings model fails (the job is retried)."""
    if deps.embeddings is None:
        return 0
    model = deps.embeddings.model
    stored = 0
    pending = await deps.knowledge_base.unembedded(hotel_id, model, limit)
    for start in range(0, len(pending), EMBED_BATCH):
        batch = pending[start : start + EMBED_BATCH]
        cut = [passages_of(e.title, e.body, e.keywords) for e in batch]
        vectors = await deps.embeddings.passages([text for parts in cut for _, text in parts])
        offset = 0
        for entry, parts in zip(batch, cut, strict=True):
            rows = [(kind, text, vectors[offset + i]) for i, (kind, text) in enumerate(parts)]
            offset += len(parts)
            if await deps.knowledge_base.save_passages(hotel_id, entry, rows, model):
                stored += 1
    if stored:
        log.info("knowledge.embedded", hotel_id=hotel_id, entries=stored, model=model)
    return stored


# Long entries are also cut into windows of WINDOW_SENTENCES sentences, WINDOW_STRIDE apart,
# each under the entry's head (measured on evals/retrieval/hotels; docs/retrieval.md).
WINDOW_SENTENCES = 2
WINDOW_STRIDE = 1
WINDOW_MIN_CHARS = 300
MAX_WINDOWS = 30
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)|\s*\n+\s*")


def entry_head(title: str, keywords: str) -> str:
    """An entry's title with its keywords: what it is about."""
    return f"{title} ({keywords})" if keywords.strip() else title


def sentences(text: str) -> list[str]:
    """`text` cut at sentence ends and line breaks (list items and lines stay whole)."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


def passages_of(title: str, body: str, keywords: str) -> list[tuple[PassageKind, str]]:
    """The texts embedded for an entry, with their kinds: its head (`entry_head`), its whole
    text `head: body`, and when the body is over WINDOW_MIN_CHARS characters and more than
    WINDOW_SENTENCES sentences, windows of WINDOW_SENTENCES sentences under the head (at most
    MAX_WINDOWS)."""
    head = entry_head(title, keywords)
    found: list[tuple[PassageKind, str]] = [("head", head), ("text", f"{head}: {body}")]
    parts = sentences(body)
    if len(body) > WINDOW_MIN_CHARS and len(parts) > WINDOW_SENTENCES:
        last = len(parts) - WINDOW_SENTENCES
        starts = list(range(0, last + 1, WINDOW_STRIDE))
        if starts[-1] != last:
            starts.append(last)
        for start in starts[:MAX_WINDOWS]:
            window = " ".join(parts[start : start + WINDOW_SENTENCES])
            found.append(("window", f"{head}: {window}"))
    return found


# --- managers' edits ------------------------------------------------------------------------


async def require_manager(deps: Deps, session: AgentSession) -> None:
    """Raise `Forbidden` unless the agent is a manager of their current hotel."""
    for membership in await deps.agents.memberships(session.agent_id):
        if membership.hotel_id == session.hotel_id and membership.role == "manager":
            return
    raise Forbidden("only the hotel's managers edit its knowledge base")


def check_entry(title: str, body: str, keywords: str) -> tuple[str, str, str]:
    """The fields trimmed; raises `InvalidInput` naming the first bad one."""
    title, body, keywords = title.strip(), body.strip(), " ".join(keywords.split())
    if not 1 <= len(title) <= MAX_TITLE:
        raise InvalidInput(f"title: 1 to {MAX_TITLE} characters")
    if not 1 <= len(body) <= MAX_BODY:
        raise InvalidInput(f"body: 1 to {MAX_BODY} characters")
    if len(keywords) > MAX_KEYWORDS:
        raise InvalidInput(f"keywords: at most {MAX_KEYWORDS} characters")
    return title, body, keywords


async def entries(deps: Deps, session: AgentSession) -> list[KnowledgeEntry]:
    return await deps.knowledge_base.entries(session.hotel_id)


async def add(
    deps: Deps, session: AgentSession, *, title: str, body: str, keywords: str
) -> KnowledgeEntry:
    await require_manager(deps, session)
    entry = await deps.knowledge_base.create(session.hotel_id, *check_entry(title, body, keywords))
    await _embed_later(deps.jobs, session.hotel_id)
    log.info("knowledge.added", hotel_id=session.hotel_id, entry_id=entry.id)
    return entry


async def edit(
    deps: Deps, session: AgentSession, entry_id: int, *, title: str, body: str, keywords: str
) -> KnowledgeEntry:
    await require_manager(deps, session)
    entry = await deps.knowledge_base.update(
        session.hotel_id, entry_id, *check_entry(title, body, keywords)
    )
    await _embed_later(deps.jobs, session.hotel_id)
    return entry


async def remove(deps: Deps, session: AgentSession, entry_id: int) -> None:
    await require_manager(deps, session)
    await deps.knowledge_base.delete(session.hotel_id, entry_id)


def parse_file(filename: str, content: bytes) -> list[tuple[str, str, str]]:
    """The entries (title, body, keywords) of a Markdown or CSV file, told apart by `filename`'s
    suffix. Raises `InvalidInput` naming the line or row at fault."""
    if len(content) > MAX_IMPORT_BYTES:
        raise InvalidInput(f"the file is larger than {MAX_IMPORT_BYTES // 1000} kB")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the file is not UTF-8 text") from None
    name = filename.lower()
    if name.endswith((".md", ".markdown", ".txt")):
        parsed = parse_markdown(text)
    elif name.endswith(".csv"):
        parsed = parse_csv(text)
    else:
        raise InvalidInput("import a .md or a .csv file")
    if not parsed:
        raise InvalidInput("the file has no entries")
    if len(parsed) > MAX_IMPORT_ENTRIES:
        raise InvalidInput(f"at most {MAX_IMPORT_ENTRIES} entries per file")
    titles = [title.lower() for title, _, _ in parsed]
    duplicated = sorted({t for t in titles if titles.count(t) > 1})
    if duplicated:
        raise InvalidInput(f"the file has the title {duplicated[0]!r} twice")
    return parsed


async def import_file(deps: Deps, hotel_id: int, filename: str, content: bytes) -> tuple[int, int]:
    """Add or update entries from a Markdown or CSV file; returns (added, updated). Raises
    `InvalidInput` naming the line or row at fault; nothing is stored then."""
    parsed = parse_file(filename, content)
    added, updated = await deps.knowledge_base.upsert_many(hotel_id, parsed)
    await _embed_later(deps.jobs, hotel_id)
    log.info("knowledge.imported", hotel_id=hotel_id, added=added, updated=updated)
    return added, updated


@dataclass(frozen=True, slots=True)
class KnowledgeSync:
    added: int
    updated: int
    removed: int
    entries: int  # in the knowledge base now

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


async def sync_file(
    knowledge_base: KnowledgeBase, jobs: JobQueue, hotel_id: int, filename: str, content: bytes
) -> KnowledgeSync:
    """Make the hotel's knowledge base exactly the entries of a Markdown or CSV file: entries
    added, changed (re-embedded) and removed; unchanged entries are left alone, so syncing the
    same file again changes nothing. Raises `InvalidInput` naming the line or row at fault, and
    nothing is changed then."""
    parsed = parse_file(filename, content)
    added, updated, removed = await knowledge_base.replace_all(hotel_id, parsed)
    result = KnowledgeSync(added, updated, removed, len(parsed))
    if result.changed:
        await _embed_later(jobs, hotel_id)
        log.info("knowledge.synced", hotel_id=hotel_id, added=added, updated=updated,
                 removed=removed)  # fmt: skip
    return result


async def import_for(
    deps: Deps, session: AgentSession, filename: str, content: bytes
) -> tuple[int, int]:
    """`import_file` for a manager's current hotel."""
    await require_manager(deps, session)
    return await import_file(deps, session.hotel_id, filename, content)


_HEADING = re.compile(r"^#{1,2}\s+(.+?)\s*#*\s*$")
_KEYWORDS = re.compile(r"^keywords\s*:\s*(.*)$", re.IGNORECASE)
# `## wifi: Internet access`, `## late_checkout: Late check-out`: a lowercase key before the title
_KEYED = re.compile(r"^([a-z0-9][a-z0-9_.-]{0,39})\s*:\s+(\S.*)$")


def split_heading(heading: str) -> tuple[str, str]:
    """A heading's title and the words of its key, for headings written `key: Title` (a
    lowercase word, digits, `_ - .` before the colon); other headings are the title as they are
    with no key words."""
    match = _KEYED.match(heading)
    if match is None:
        return heading, ""
    return match.group(2), re.sub(r"[_.-]+", " ", match.group(1)).strip()


def parse_markdown(text: str) -> list[tuple[str, str, str]]:
    """Entries from Markdown: each `##` heading (or `#` when the file has no `##`) starts an
    entry, the text below it is the body, and a first line `Keywords: a, b` gives keywords. A
    heading `key: Title` (`split_heading`) is the entry Title with the key's words as keywords."""
    lines = text.splitlines()
    level = "## " if any(line.startswith("## ") for line in lines) else "# "
    found: list[tuple[str, list[str], int]] = []
    for number, line in enumerate(lines, 1):
        match = _HEADING.match(line) if line.startswith(level) else None
        if match:
            found.append((match.group(1), [], number))
        elif found:
            found[-1][1].append(line)
    result = []
    for heading, body_lines, number in found:
        title, key = split_heading(heading)
        keywords = ""
        while body_lines and not body_lines[0].strip():
            body_lines.pop(0)
        if body_lines and (match := _KEYWORDS.match(body_lines[0].strip())):
            keywords = match.group(1)
            body_lines.pop(0)
        if key and key.lower() not in f"{title} {keywords}".lower():
            keywords = f"{keywords}, {key}" if keywords else key
        body = "\n".join(body_lines).strip()
        try:
            result.append(check_entry(title, body, keywords))
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc.message}") from None
    return result


def parse_csv(text: str) -> list[tuple[str, str, str]]:
    """Entries from CSV with a header row naming `title` and `body` (or `text`), optionally
    `keywords`."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        fields = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
        body_field = fields.get("body") or fields.get("text")
        if "title" not in fields or body_field is None:
            raise InvalidInput("the CSV needs a header with columns title and body")
        result = []
        for number, row in enumerate(reader, 2):
            keywords = row.get(fields["keywords"], "") if "keywords" in fields else ""
            try:
                result.append(
                    check_entry(row[fields["title"]] or "", row[body_field] or "", keywords or "")
                )
            except InvalidInput as exc:
                raise InvalidInput(f"row {number}: {exc.message}") from None
    except csv.Error as exc:
        raise InvalidInput(f"the CSV is malformed: {exc}") from None
    return result


async def _embed_later(jobs: JobQueue, hotel_id: int) -> None:
    try:
        await jobs.enqueue_embedding(hotel_id)
    except (Unavailable, HotelChatError):
        log.warning("knowledge.enqueue_failed", hotel_id=hotel_id)  # the cron catches up
