"""The knowledge-base page of the dashboard and its JSON API: every agent of the hotel reads the
entries; its managers add, edit, delete and import them (Markdown or CSV)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import Blueprint, Response, jsonify, render_template, request

from hotelchat.domain.errors import InvalidInput, NotFound
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.dashboard import MAX_ID, _Body, parse
from hotelchat.entrypoints.web.security import (
    add_page_headers,
    agent_page,
    checked_session,
    current_session,
)
from hotelchat.services import auth, knowledge
from hotelchat.services.ports import KnowledgeEntry

blueprint = Blueprint("knowledge", __name__)


class EntryIn(_Body):
    title: str = Field(max_length=knowledge.MAX_TITLE * 2)
    body: str = Field(max_length=knowledge.MAX_BODY * 2)
    keywords: str = Field(default="", max_length=knowledge.MAX_KEYWORDS * 2)


def entry_payload(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "title": entry.title,
        "body": entry.body,
        "keywords": entry.keywords,
        "updated_at": entry.updated_at.isoformat(),
        "embedded": entry.embedded,
    }


def checked_entry_id(value: int) -> int:
    if not 0 < value < MAX_ID:
        raise NotFound("no such entry")
    return value


@blueprint.get("/dashboard/knowledge")
@agent_page
async def page() -> Response:
    session = await current_session()
    hotels = await auth.memberships(container().deps, session)
    current = next((h for h in hotels if h.hotel_id == session.hotel_id), None)
    html = await render_template(
        "knowledge.html",
        session=session,
        current=current,
        manager=current is not None and current.role == "manager",
    )
    return add_page_headers(Response(html, content_type="text/html"))


@blueprint.get("/api/knowledge")
async def list_entries() -> Response:
    session = await current_session()
    found = await knowledge.entries(container().deps, session)
    return jsonify({"entries": [entry_payload(e) for e in found]})


@blueprint.post("/api/knowledge")
async def add_entry() -> tuple[Response, int]:
    session = await checked_session()
    body = await parse(EntryIn)
    entry = await knowledge.add(
        container().deps, session, title=body.title, body=body.body, keywords=body.keywords
    )
    return jsonify(entry_payload(entry)), 201


@blueprint.put("/api/knowledge/<int:entry_id>")
async def edit_entry(entry_id: int) -> Response:
    session = await checked_session()
    body = await parse(EntryIn)
    entry = await knowledge.edit(
        container().deps,
        session,
        checked_entry_id(entry_id),
        title=body.title,
        body=body.body,
        keywords=body.keywords,
    )
    return jsonify(entry_payload(entry))


@blueprint.delete("/api/knowledge/<int:entry_id>")
async def delete_entry(entry_id: int) -> Response:
    session = await checked_session()
    await knowledge.remove(container().deps, session, checked_entry_id(entry_id))
    return jsonify({"ok": True})


@blueprint.post("/api/knowledge/import")
async def import_entries() -> Response:
    """A multipart upload with one `file` (.md or .csv); the CSRF token in X-CSRF-Token."""
    session = await checked_session()
    files = await request.files
    upload = files.get("file")
    if upload is None or not upload.filename:
        raise InvalidInput("choose a .md or .csv file")
    content = upload.read(knowledge.MAX_IMPORT_BYTES + 1)
    added, updated = await knowledge.import_for(container().deps, session, upload.filename, content)
    return jsonify({"added": added, "updated": updated})
