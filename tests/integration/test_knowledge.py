"""The knowledge base: multilingual retrieval by real e5 vectors (pgvector and plain arrays),
edits that bump the version and re-embed, Markdown and CSV imports with bad files, manager-only
changes, cross-tenant ids, and the sources stored with each reply."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client
from werkzeug.datastructures import FileStorage

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import knowledge, replies
from tests.conftest import Tenant, create_tenant
from tests.helpers import as_role, receive

KB = (
    ("Parking", "Underground parking costs EUR 18 per day; the entrance is on Calle del Mar.",
     "car park, garage, where to leave the car"),
    ("Breakfast", "Breakfast is served from 7:00 to 10:30 in the Olivo restaurant.",
     "breakfast buffet, morning meal"),
    ("Wi-Fi", "Free Wi-Fi everywhere; the password is on your key card.",
     "internet, wireless, Wi-Fi password"),
    ("Pets", "Dogs and cats up to 15 kg are welcome for EUR 20 per night.", "dogs, cats, animals"),
)  # fmt: skip


@pytest.fixture
async def hotel(admin: asyncpg.Connection, container: Container) -> Tenant:
    """Hotel A with an embedded knowledge base (keywords included)."""
    tenant = await create_tenant(admin, knowledge=())
    await container.deps.knowledge_base.upsert_many(tenant.hotel_id, list(KB))
    assert await knowledge.embed_pending(container.deps, tenant.hotel_id) == len(KB)
    return tenant


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("where can i leave my car?", "Parking"),
        ("hay parking en el hotel?", "Parking"),
        ("wo kann ich mein auto abstellen", "Parking"),
        ("a que hora es el desayuno", "Breakfast"),
        ("petit dej c'est jusqu'a quelle heure", "Breakfast"),
        ("whats the wifi pw", "Wi-Fi"),
        ("posso portare il mio cane?", "Pets"),
    ],
)
async def test_questions_in_any_language_find_their_entry(
    container: Container, hotel: Tenant, question: str, title: str
) -> None:
    found = await knowledge.retrieve(container.deps, hotel.hotel_id, question, limit=3)
    assert found.method == "vector"
    assert found.passages[0].title == title


async def test_a_clear_match_is_confident_enough_to_answer_alone(
    container: Container, hotel: Tenant
) -> None:
    found = await knowledge.retrieve(
        container.deps, hotel.hotel_id, "hay parking en el hotel?", limit=3
    )
    assert found.confident
    assert found.confidence() >= knowledge.CONFIDENCE_MIN


async def test_an_unanswerable_question_is_not_answered_alone(
    container: Container, hotel: Tenant
) -> None:
    found = await knowledge.retrieve(
        container.deps, hotel.hotel_id, "can i bring my horse to the opera tonight", limit=3
    )
    assert not found.confident


async def test_without_vectors_retrieval_falls_back_to_full_text(
    container: Container, admin: asyncpg.Connection
) -> None:
    tenant = await create_tenant(admin)  # entries added, not yet embedded
    found = await knowledge.retrieve(container.deps, tenant.hotel_id, "Is there parking?", limit=3)
    assert found.method == "text"
    assert found.passages[0].title == "Parking"


async def test_plain_arrays_work_where_pgvector_is_missing(
    container: Container, settings: Settings, admin: asyncpg.Connection
) -> None:
    from hotelchat import bootstrap

    await admin.execute(
        """DELETE FROM kb_passages;
           ALTER TABLE kb_passages ALTER COLUMN embedding TYPE double precision[] USING NULL"""
    )
    fresh = await bootstrap.build(settings)  # detects the column type anew
    try:
        tenant = await create_tenant(admin, knowledge=())
        await fresh.deps.knowledge_base.upsert_many(tenant.hotel_id, list(KB))
        assert await knowledge.embed_pending(fresh.deps, tenant.hotel_id) == len(KB)
        found = await knowledge.retrieve(fresh.deps, tenant.hotel_id, "hay parking?", limit=3)
        assert (found.method, found.passages[0].title, found.confident) == (
            "vector",
            "Parking",
            True,
        )
        assert (
            await admin.fetchval(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'kb_passages'::regclass AND attname = 'embedding'"
            )
            == "double precision[]"
        )
    finally:
        await fresh.close()
        await admin.execute(
            """DELETE FROM kb_passages;
               ALTER TABLE kb_passages ALTER COLUMN embedding TYPE vector USING NULL"""
        )


async def test_the_knowledge_base_alone_answers_in_any_language(
    build_container: Any, hotel: Tenant, admin: asyncpg.Connection
) -> None:
    container: Container = await build_container(openai_api_key=None)
    message_id = await receive(container, hotel, "hay parking en el hotel?")
    assert await replies.reply_to_inbound(container.deps, hotel.hotel_id, message_id) == "sent"
    row = await admin.fetchrow(
        "SELECT body, sources FROM messages WHERE in_reply_to = $1", message_id
    )
    assert row is not None
    assert row["body"].startswith("Underground parking costs EUR 18")
    assert '"title": "Parking"' in row["sources"]


async def test_a_model_reply_keeps_its_sources_for_staff(
    container: Container, hotel: Tenant, admin: asyncpg.Connection
) -> None:
    message_id = await receive(container, hotel, "what time is breakfast?")
    await replies.reply_to_inbound(container.deps, hotel.hotel_id, message_id)
    rows = await container.deps.inbox.messages(
        hotel.hotel_id, 1, after=None, before=None, limit=10, include_internal=True
    )
    reply = next(m for m in rows if m.author.value == "ai")
    assert reply.sources[0]["title"] == "Breakfast"
    assert 0.8 < float(reply.sources[0]["score"]) <= 1.0  # type: ignore[arg-type]


async def test_edits_bump_the_version_and_are_embedded_again(
    container: Container, hotel: Tenant
) -> None:
    base = container.deps.knowledge_base
    version = await base.version(hotel.hotel_id)
    (parking,) = [e for e in await base.entries(hotel.hotel_id) if e.title == "Parking"]
    edited = await base.update(hotel.hotel_id, parking.id, "Parking", "Parking is now free.", "")
    assert not edited.embedded
    assert await base.version(hotel.hotel_id) == version + 1
    # Vectors computed for the old text are not stored over the new one.
    stale = [("text", "Parking: old", [0.0] * 384)]
    assert not await base.save_passages(hotel.hotel_id, parking, stale, "x")  # type: ignore[arg-type]
    assert await knowledge.embed_pending(container.deps, hotel.hotel_id) == 1
    found = await knowledge.retrieve(container.deps, hotel.hotel_id, "parking price?", limit=1)
    assert found.passages[0].body == "Parking is now free."
    await base.delete(hotel.hotel_id, parking.id)
    assert await base.version(hotel.hotel_id) == version + 2


# --- the API ------------------------------------------------------------------------------


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


def upload(name: str, content: bytes) -> dict[str, FileStorage]:
    return {"file": FileStorage(io.BytesIO(content), filename=name)}


async def test_managers_edit_and_agents_read(
    client: Client, admin: asyncpg.Connection, container: Container
) -> None:
    tenant = await create_tenant(admin, knowledge=())
    csrf = await as_role(client, admin, tenant, "manager")
    headers = {"X-CSRF-Token": csrf}
    entry = {"title": "Spa", "body": "The spa opens at 9:00.", "keywords": "sauna, massage"}
    created = await client.post("/api/knowledge", json=entry, headers=headers)
    assert created.status_code == 201
    entry_id = (await created.get_json())["id"]
    again = await client.post("/api/knowledge", json=entry | {"title": "SPA"}, headers=headers)
    assert (again.status_code, (await again.get_json())["error"]["code"]) == (
        409,
        "duplicate_title",
    )
    edited = await client.put(
        f"/api/knowledge/{entry_id}",
        json=entry | {"body": "The spa opens at 8:00."},
        headers=headers,
    )
    assert edited.status_code == 200
    assert (await edited.get_json())["body"] == "The spa opens at 8:00."
    page = await client.get("/dashboard/knowledge")
    assert page.status_code == 200 and "Add entry" in await page.get_data(as_text=True)
    listed = await (await client.get("/api/knowledge")).get_json()
    assert [e["title"] for e in listed["entries"]] == ["Spa"]
    assert (await client.delete(f"/api/knowledge/{entry_id}", headers=headers)).status_code == 200
    assert (await client.delete(f"/api/knowledge/{entry_id}", headers=headers)).status_code == 404


async def test_an_agent_cannot_change_the_knowledge_base(
    client: Client, admin: asyncpg.Connection
) -> None:
    tenant = await create_tenant(admin)
    csrf = await as_role(client, admin, tenant, "agent")
    headers = {"X-CSRF-Token": csrf}
    entry = {"title": "Spa", "body": "Open at 9.", "keywords": ""}
    assert (await client.post("/api/knowledge", json=entry, headers=headers)).status_code == 403
    listed = await (await client.get("/api/knowledge")).get_json()
    entry_id = listed["entries"][0]["id"]
    assert (
        await client.put(f"/api/knowledge/{entry_id}", json=entry, headers=headers)
    ).status_code == 403
    assert (await client.delete(f"/api/knowledge/{entry_id}", headers=headers)).status_code == 403
    files = upload("kb.md", b"## Spa\nOpen at 9.\n")
    response = await client.post("/api/knowledge/import", files=files, headers=headers)
    assert response.status_code == 403
    page = await (await client.get("/dashboard/knowledge")).get_data(as_text=True)
    assert "Only the hotel's managers" in page


async def test_another_hotels_entries_are_out_of_reach(
    client: Client, admin: asyncpg.Connection, other_tenant: Tenant
) -> None:
    tenant = await create_tenant(admin, knowledge=())
    csrf = await as_role(client, admin, tenant, "manager")
    theirs = await admin.fetchval(
        "SELECT id FROM kb_entries WHERE hotel_id = $1 LIMIT 1", other_tenant.hotel_id
    )
    headers = {"X-CSRF-Token": csrf}
    entry = {"title": "Hacked", "body": "x", "keywords": ""}
    assert (
        await client.put(f"/api/knowledge/{theirs}", json=entry, headers=headers)
    ).status_code == 404
    assert (await client.delete(f"/api/knowledge/{theirs}", headers=headers)).status_code == 404
    listed = await (await client.get("/api/knowledge")).get_json()
    assert listed["entries"] == []
    assert await admin.fetchval("SELECT title FROM kb_entries WHERE id = $1", theirs) != "Hacked"


MARKDOWN = b"""# Amapola Resort guest guide

## Breakfast
Keywords: morning meal, buffet
Breakfast is served from 7:00 to 10:30.

Gluten-free options on request.

## Parking
Underground parking, EUR 18 per day.
"""

CSV = "title,body,keywords\nBreakfast,Breakfast from 7:30.,breakfast\nSpa,Spa opens at 9.,sauna\n"


async def test_imports_from_markdown_and_csv(
    client: Client, admin: asyncpg.Connection, container: Container
) -> None:
    tenant = await create_tenant(admin, knowledge=())
    csrf = await as_role(client, admin, tenant, "manager")
    headers = {"X-CSRF-Token": csrf}
    files = upload("guide.md", MARKDOWN)
    response = await client.post("/api/knowledge/import", files=files, headers=headers)
    assert (await response.get_json()) == {"added": 2, "updated": 0}
    files = upload("guide.csv", CSV.encode())
    response = await client.post("/api/knowledge/import", files=files, headers=headers)
    assert (await response.get_json()) == {"added": 1, "updated": 1}
    entries = {e.title: e for e in await container.deps.knowledge_base.entries(tenant.hotel_id)}
    assert set(entries) == {"Breakfast", "Parking", "Spa"}
    assert entries["Breakfast"].body == "Breakfast from 7:30."
    assert entries["Parking"].body == "Underground parking, EUR 18 per day."


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("guide.md", b"## Spa\n\n## Gym\nOpen 24 h.\n", "line 1: body"),
        ("guide.csv", b"title,body\nSpa,\n", "row 2: body"),
        ("guide.csv", b"name,text\nSpa,Open.\n", "header"),
        ("guide.csv", b"title,body\nSpa,Open.\nspa,Again.\n", "twice"),
        ("guide.pdf", b"%PDF-1.4", ".md or a .csv"),
        ("guide.md", "## Spa\nOuvert à 9 h.\n".encode("latin-1"), "UTF-8"),
        ("guide.md", b"no headings at all", "no entries"),
        ("guide.md", b"## " + b"x" * 300 + b"\nbody\n", "title"),
    ],
)
async def test_bad_imports_store_nothing_and_say_where(
    client: Client, admin: asyncpg.Connection, name: str, content: bytes, expected: str
) -> None:
    tenant = await create_tenant(admin, knowledge=())
    csrf = await as_role(client, admin, tenant, "manager")
    response = await client.post(
        "/api/knowledge/import",
        files=upload(name, content),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 400
    assert expected in (await response.get_json())["error"]["message"]
    assert (
        await admin.fetchval("SELECT count(*) FROM kb_entries WHERE hotel_id = $1", tenant.hotel_id)
        == 0
    )


async def test_an_oversized_import_is_refused(client: Client, admin: asyncpg.Connection) -> None:
    tenant = await create_tenant(admin, knowledge=())
    csrf = await as_role(client, admin, tenant, "manager")
    big = b"## Entry\n" + b"x" * 1_200_000
    response = await client.post(
        "/api/knowledge/import",
        files=upload("big.md", big),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 413


async def test_passages_are_cut_per_entry_version_and_kept_per_tenant(
    container: Container, hotel: Tenant, admin: asyncpg.Connection, backing: Any
) -> None:
    """kb_passages: the passages of each entry's current version, with their kinds; row-level
    security shows them to their own hotel only, and refuses writes for another hotel."""
    rows = await admin.fetch(
        "SELECT entry_id, kind, entry_version FROM kb_passages WHERE hotel_id = $1",
        hotel.hotel_id,
    )
    entries = await container.deps.knowledge_base.entries(hotel.hotel_id)
    assert {r["entry_id"] for r in rows} == {e.id for e in entries}
    for entry in entries:
        kinds = sorted(r["kind"] for r in rows if r["entry_id"] == entry.id)
        assert kinds == ["head", "text"]  # short entries: no windows
        assert {r["entry_version"] for r in rows if r["entry_id"] == entry.id} == {entry.updated_at}
    other = await create_tenant(admin, "hotel-b", "+15550000002", knowledge=())
    conn = await asyncpg.connect(backing.app_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM kb_passages") == 0  # no tenant
        async with conn.transaction():
            await conn.execute("SELECT set_config('hotelchat.hotel_id', $1, true)",
                               str(other.hotel_id))  # fmt: skip
            assert await conn.fetchval("SELECT count(*) FROM kb_passages") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    """INSERT INTO kb_passages (hotel_id, entry_id, ordinal, kind, text,
                         embedding, model, entry_version)
                       VALUES ($1, $2, 9, 'text', 'x', $3::vector, 'm', now())""",
                    hotel.hotel_id,
                    entries[0].id,
                    "[" + ",".join(["0"] * 384) + "]",
                )
        async with conn.transaction():
            await conn.execute("SELECT set_config('hotelchat.hotel_id', $1, true)",
                               str(hotel.hotel_id))  # fmt: skip
            assert await conn.fetchval("SELECT count(*) FROM kb_passages") == len(rows)
    finally:
        await conn.close()
    # Deleting an entry deletes its passages.
    await container.deps.knowledge_base.delete(hotel.hotel_id, entries[0].id)
    assert not await admin.fetchval(
        "SELECT count(*) FROM kb_passages WHERE entry_id = $1", entries[0].id
    )
