"""The SQL behind a hotel's knowledge base: entries (edited by managers, imported from files),
their embeddings, and retrieval by vector similarity.

Every change bumps the hotel's `knowledge_version` in the same transaction (the response cache
keys on it). Vectors live next to their entry, with the model that made them: pgvector's `vector`
columns where the server has the extension, else arrays of doubles; similarity is computed in
PostgreSQL either way (the vectors are unit length, so a dot product is the cosine). Each entry
version is stored as passages (kb_passages: its head, its whole text, sentence windows of long
entries); an entry's score is `ENTRY_SCORE` of its passages' cosines (docs/retrieval.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from hotelchat.adapters.postgres.database import Connection, Database
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound
from hotelchat.domain.model import Passage
from hotelchat.services.ports import KnowledgeEntry, PassageKind

# An entry's score from the question's cosines with its passages: weights of its head (title and
# keywords), its whole text and its best passage (whole text or sentence window); they sum to 1.
# Measured on evals/retrieval (docs/retrieval.md).
ENTRY_SCORE = (0.2, 0.0, 0.8)


def _maybe(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


COLUMNS = """id, title, body, keywords, updated_at,
             (embedded_at IS NOT NULL AND embedded_at >= updated_at) AS embedded"""


def _entry(row: asyncpg.Record) -> KnowledgeEntry:
    return KnowledgeEntry(
        row["id"], row["title"], row["body"], row["keywords"], row["updated_at"], row["embedded"]
    )


async def _bump(conn: Connection, hotel_id: int) -> None:
    await conn.execute(
        "UPDATE hotels SET knowledge_version = knowledge_version + 1 WHERE id = $1", hotel_id
    )


def _translate(exc: asyncpg.PostgresError) -> Exception:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("an entry with this title exists", code="duplicate_title")
    if isinstance(exc, asyncpg.CheckViolationError):
        return InvalidInput("title 1-200 characters, text 1-8000, keywords at most 500")
    return exc


_UPSERT = """INSERT INTO kb_entries (hotel_id, title, body, keywords, search_config)
              SELECT $1, $2, $3, $4, search_config FROM hotels WHERE id = $1
              ON CONFLICT (hotel_id, lower(title)) DO UPDATE SET
                title = CASE WHEN $5 THEN EXCLUDED.title ELSE kb_entries.title END,
                body = EXCLUDED.body, keywords = EXCLUDED.keywords, updated_at = now()
              WHERE NOT $5 OR (kb_entries.title, kb_entries.body, kb_entries.keywords)
                              IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.body, EXCLUDED.keywords)
              RETURNING (xmax = 0)"""


async def _upsert(
    conn: Connection, hotel_id: int, entries: list[tuple[str, str, str]], *, only_changed: bool
) -> tuple[int, int]:
    """Insert or update entries by title; with `only_changed`, an entry equal to the stored one
    (its title's case included) is not touched. Returns (added, updated)."""
    added = updated = 0
    for title, body, keywords in entries:
        try:
            inserted = await conn.fetchval(_UPSERT, hotel_id, title, body, keywords, only_changed)
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from exc
        if inserted is True:
            added += 1
        elif inserted is False:
            updated += 1
    return added, updated


class PostgresKnowledge:
    """Knowledge-base entries of one hotel at a time (tenant transactions)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._vector_type: str | None = None

    async def entries(self, hotel_id: int) -> list[KnowledgeEntry]:
        async def work(conn: Connection) -> list[KnowledgeEntry]:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM kb_entries WHERE hotel_id = $1 ORDER BY title",  # noqa: S608
                hotel_id,
            )
            return [_entry(r) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def version(self, hotel_id: int) -> int:
        async def work(conn: Connection) -> int:
            version: int = await conn.fetchval(
                "SELECT knowledge_version FROM hotels WHERE id = $1", hotel_id
            )
            return version

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def create(self, hotel_id: int, title: str, body: str, keywords: str) -> KnowledgeEntry:
        async def work(conn: Connection) -> KnowledgeEntry:
            try:
                row = await conn.fetchrow(
                    f"""INSERT INTO kb_entries (hotel_id, title, body, keywords, search_config)
                        SELECT $1, $2, $3, $4, search_config FROM hotels WHERE id = $1
                        RETURNING {COLUMNS}""",  # noqa: S608
                    hotel_id,
                    title,
                    body,
                    keywords,
                )
            except asyncpg.PostgresError as exc:
                raise _translate(exc) from exc
            assert row is not None
            await _bump(conn, hotel_id)
            return _entry(row)

        return await self.db.tenant(hotel_id, work, idempotent=False)

    async def update(
        self, hotel_id: int, entry_id: int, title: str, body: str, keywords: str
    ) -> KnowledgeEntry:
        async def work(conn: Connection) -> KnowledgeEntry:
            try:
                row = await conn.fetchrow(
                    f"""UPDATE kb_entries SET title = $3, body = $4, keywords = $5,
                          updated_at = now()
                        WHERE hotel_id = $1 AND id = $2 RETURNING {COLUMNS}""",  # noqa: S608
                    hotel_id,
                    entry_id,
                    title,
                    body,
                    keywords,
                )
            except asyncpg.PostgresError as exc:
                raise _translate(exc) from exc
            if row is None:
                raise NotFound("no such entry")
            await _bump(conn, hotel_id)
            return _entry(row)

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def delete(self, hotel_id: int, entry_id: int) -> None:
        async def work(conn: Connection) -> None:
            done = await conn.execute(
                "DELETE FROM kb_entries WHERE hotel_id = $1 AND id = $2", hotel_id, entry_id
            )
            if done != "DELETE 1":
                raise NotFound("no such entry")
            await _bump(conn, hotel_id)

        await self.db.tenant(hotel_id, work, idempotent=False)

    async def upsert_many(
        self, hotel_id: int, entries: list[tuple[str, str, str]]
    ) -> tuple[int, int]:
        """Add entries (title, body, keywords), updating those whose title exists (case does not
        matter); one transaction, one version bump. Returns (added, updated)."""

        async def work(conn: Connection) -> tuple[int, int]:
            counts = await _upsert(conn, hotel_id, entries, only_changed=False)
            await _bump(conn, hotel_id)
            return counts

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def replace_all(
        self, hotel_id: int, entries: list[tuple[str, str, str]]
    ) -> tuple[int, int, int]:
        """Make the hotel's entries exactly `entries` (title, body, keywords), matched by title
        whatever its case, in one transaction; unchanged entries keep their vectors, and the
        version is bumped only when something changed. Returns (added, updated, removed)."""

        async def work(conn: Connection) -> tuple[int, int, int]:
            added, updated = await _upsert(conn, hotel_id, entries, only_changed=True)
            done = await conn.execute(
                """DELETE FROM kb_entries
                   WHERE hotel_id = $1 AND NOT (lower(title) = ANY($2))""",
                hotel_id,
                [title.lower() for title, _, _ in entries],
            )
            removed = int(done.split()[-1])
            if added or updated or removed:
                await _bump(conn, hotel_id)
            return added, updated, removed

        return await self.db.tenant(hotel_id, work, idempotent=True)

    # --- embeddings -------------------------------------------------------------------------

    async def hotels_to_embed(self, model: str) -> list[int]:
        """Hotels with entries lacking current vectors of `model` (across tenants)."""

        async def work(conn: Connection) -> list[int]:
            rows = await conn.fetch("SELECT * FROM hotelchat_unembedded_hotels($1)", model)
            return [row[0] for row in rows]

        return await self.db.platform(work, idempotent=True)

    async def unembedded(self, hotel_id: int, model: str, limit: int) -> list[KnowledgeEntry]:
        """Entries with no vectors of `model`, or vectors older than their last edit."""

        async def work(conn: Connection) -> list[KnowledgeEntry]:
            rows = await conn.fetch(
                f"""SELECT {COLUMNS} FROM kb_entries
                    WHERE hotel_id = $1 AND (embedded_at IS NULL OR embedded_at < updated_at
                                             OR embedding_model IS DISTINCT FROM $2)
                    ORDER BY id LIMIT $3""",  # noqa: S608
                hotel_id,
                model,
                limit,
            )
            return [_entry(r) for r in rows]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def save_passages(
        self,
        hotel_id: int,
        entry: KnowledgeEntry,
        passages: Sequence[tuple[PassageKind, str, list[float]]],
        model: str,
    ) -> bool:
        """Replace the entry's passages (kind, text, vector) with `passages`, computed by
        `model` from the entry version `entry`, unless the entry was edited since (then the
        next run embeds the new text). One transaction. True when stored."""

        async def work(conn: Connection) -> bool:
            cast = await self._cast(conn)
            current = await conn.fetchval(
                """SELECT updated_at FROM kb_entries WHERE hotel_id = $1 AND id = $2
                   FOR UPDATE""",
                hotel_id,
                entry.id,
            )
            if current != entry.updated_at:
                return False
            await conn.execute("DELETE FROM kb_passages WHERE entry_id = $1", entry.id)
            await conn.executemany(
                f"""INSERT INTO kb_passages (hotel_id, entry_id, ordinal, kind, text, embedding,
                                             model, entry_version)
                    VALUES ($1, $2, $3, $4, $5, $6::{cast}, $7, $8)""",  # noqa: S608
                [
                    (
                        hotel_id,
                        entry.id,
                        ordinal,
                        kind,
                        text,
                        self._literal(cast, vector),
                        model,
                        entry.updated_at,
                    )
                    for ordinal, (kind, text, vector) in enumerate(passages)
                ],
            )
            await conn.execute(
                """UPDATE kb_entries SET embedding_model = $3, embedded_at = now()
                   WHERE hotel_id = $1 AND id = $2""",
                hotel_id,
                entry.id,
                model,
            )
            return True

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def nearest(
        self, hotel_id: int, vector: list[float], model: str, *, limit: int
    ) -> list[Passage]:
        """The entries with passages of `model` closest to `vector`, best first. An entry's
        score is `ENTRY_SCORE` of the question's cosines with its passages (in [-1, 1]), all
        computed in PostgreSQL; the entry, not the passage, is what is returned."""

        async def work(conn: Connection) -> list[Passage]:
            cast = await self._cast(conn)
            if cast == "vector":
                cosine = "1 - (p.embedding <=> $2::vector)"
            else:
                cosine = "(SELECT sum(a * b) FROM unnest(p.embedding, $2::float8[]) v(a, b))"
            rows = await conn.fetch(
                f"""WITH scored AS (
                      SELECT p.entry_id, p.kind, {cosine} AS s FROM kb_passages p
                      WHERE p.hotel_id = $1 AND p.model = $3
                    ), per_entry AS (
                      SELECT entry_id,
                             max(s) FILTER (WHERE kind = 'head') AS head,
                             max(s) FILTER (WHERE kind = 'text') AS whole,
                             max(s) FILTER (WHERE kind <> 'head') AS best
                      FROM scored GROUP BY entry_id
                    )
                    SELECT e.id, e.title, e.body, p.head, p.whole, p.best,
                           ($5 * coalesce(p.head, p.best) + $6 * coalesce(p.whole, p.best)
                            + $7 * p.best) AS score
                    FROM per_entry p JOIN kb_entries e ON e.hotel_id = $1 AND e.id = p.entry_id
                    WHERE p.best IS NOT NULL
                    ORDER BY score DESC, e.id LIMIT $4""",  # noqa: S608
                hotel_id,
                self._literal(cast, vector),
                model,
                limit,
                *ENTRY_SCORE,
            )
            return [
                Passage(
                    r["id"],
                    r["title"],
                    r["body"],
                    float(r["score"]),
                    head_score=_maybe(r["head"]),
                    text_score=_maybe(r["whole"]),
                    passage_score=_maybe(r["best"]),
                )
                for r in rows
            ]

        return await self.db.tenant(hotel_id, work, idempotent=True)

    async def vector_storage(self) -> str:
        """`pgvector` or `float8[] arrays (no pgvector)`: how the passages' vectors are kept."""

        async def work(conn: Connection) -> str:
            return "pgvector" if await self._cast(conn) == "vector" else "float8[] arrays"

        return await self.db.platform(work, idempotent=True)

    async def _cast(self, conn: Connection) -> str:
        """`vector` where the embedding columns are pgvector's, `float8[]` where arrays."""
        if self._vector_type is None:
            kind = await conn.fetchval(
                """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                   WHERE attrelid = 'kb_passages'::regclass AND attname = 'embedding'"""
            )
            self._vector_type = "vector" if kind == "vector" else "float8[]"
        return self._vector_type

    @staticmethod
    def _literal(cast: str, vector: list[float]) -> object:
        # pgvector's text form is "[x,y,…]"; arrays go over asyncpg's binary float8[] codec.
        return "[" + ",".join(f"{x:.7g}" for x in vector) + "]" if cast == "vector" else vector
