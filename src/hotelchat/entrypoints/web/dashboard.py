"""The agent dashboard: the page, and the JSON API its script uses.

Every endpoint works in the agent's current hotel (from the session); another hotel's
conversation id answers 404 exactly like one that does not exist. State-changing requests need
the session's CSRF token in `X-CSRF-Token`. Request bodies are validated with pydantic; a bad one
is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, jsonify, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from hotelchat.domain.conversation import Action
from hotelchat.domain.errors import InvalidInput, NotFound
from hotelchat.domain.media import MediaState, media_kind
from hotelchat.domain.model import WHATSAPP_WINDOW, ConversationState
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.security import (
    add_page_headers,
    agent_page,
    checked_session,
    current_session,
    session_token,
)
from hotelchat.services import auth, inbox
from hotelchat.services.notify import summary_payload
from hotelchat.services.ports import ConversationSummary, MediaItem, MessageView

blueprint = Blueprint("dashboard", __name__)

MAX_ID = 2**62
M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MessageIn(_Body):
    body: str = Field(default="", max_length=inbox.MAX_BODY_CHARS * 2)
    client_id: str = Field(min_length=32, max_length=40)
    # Upload tokens (`POST …/uploads`) of files to send with the message.
    attachments: list[str] = Field(default_factory=list, max_length=5)


class ReadIn(_Body):
    up_to: int = Field(ge=0, le=MAX_ID)


class HotelIn(_Body):
    hotel_id: int = Field(ge=1, le=MAX_ID)


async def parse(model: type[M]) -> M:
    """The JSON request body as `model`; raises `InvalidInput` naming the first bad field."""
    data = await request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}") from None


def checked_id(value: int) -> int:
    if not 0 < value < MAX_ID:
        raise NotFound("no such conversation")
    return value


def query_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"{name} must be a message id")
    return int(raw)


def message_payload(message: MessageView) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "direction": message.direction,
        "author": message.author.value,
        "body": message.body,
        "status": message.status.value,
        "responder": message.responder.value if message.responder else None,
        "agent_name": message.agent_name,
        "created_at": message.created_at.isoformat(),
        "error_code": message.error_code,
        "sources": [dict(source) for source in message.sources],
        "tool_calls": [dict(call) for call in message.tool_calls],
        "media": [media_payload(item, "/api/media/") for item in message.media],
        "parts": [status.value for status in message.parts],
    }


def media_payload(item: MediaItem, url_prefix: str) -> dict[str, Any]:
    """One file of a message as JSON: its kind, state (and why, when refused or failed) and,
    once stored, the authorised URL to fetch it from (`url_prefix` + its id)."""
    return {
        "id": item.id,
        "kind": media_kind(item.content_type),
        "content_type": item.content_type,
        "state": item.state.value,
        "error": item.error,
        "size": item.size_bytes,
        "filename": item.filename,
        "url": f"{url_prefix}{item.id}" if item.state is MediaState.STORED else None,
    }


def conversation_payload(summary: ConversationSummary) -> dict[str, Any]:
    payload = summary_payload(summary)
    closed = summary.window_closed_at is not None and (
        summary.last_inbound_at is None or summary.window_closed_at >= summary.last_inbound_at
    )
    if summary.last_inbound_at is not None and not closed:
        payload["window_closes_at"] = (summary.last_inbound_at + WHATSAPP_WINDOW).isoformat()
    else:
        payload["window_closes_at"] = None
    return payload


@blueprint.get("/dashboard")
@agent_page
async def page() -> Response:
    session = await current_session()
    hotels = await auth.memberships(container().deps, session)
    current = next((h for h in hotels if h.hotel_id == session.hotel_id), None)
    html = await render_template("dashboard.html", session=session, hotels=hotels, current=current)
    return add_page_headers(Response(html, content_type="text/html"))


@blueprint.post("/dashboard/hotel")
async def switch_hotel_form() -> WerkzeugResponse:
    """The hotel switcher's form post (CSRF field), then back to the dashboard."""
    from quart import redirect

    session = await checked_session()
    raw = (await request.form).get("hotel_id", "")
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("hotel_id must be a number")
    await auth.switch_hotel(container().deps, session_token(), session, int(raw))
    return redirect("/dashboard", code=303)


@blueprint.get("/api/me")
async def me() -> Response:
    session = await current_session()
    hotels = await auth.memberships(container().deps, session)
    return jsonify(
        {
            "agent": {"id": session.agent_id, "name": session.display_name},
            "hotel_id": session.hotel_id,
            "hotels": [
                {"id": h.hotel_id, "slug": h.slug, "name": h.name, "role": h.role} for h in hotels
            ],
        }
    )


@blueprint.post("/api/hotel")
async def switch_hotel() -> Response:
    session = await checked_session()
    body = await parse(HotelIn)
    membership = await auth.switch_hotel(container().deps, session_token(), session, body.hotel_id)
    return jsonify({"hotel_id": membership.hotel_id, "slug": membership.slug})


@blueprint.get("/api/conversations")
async def list_conversations() -> Response:
    session = await current_session()
    raw_states = request.args.get("state")
    states = None
    if raw_states:
        try:
            states = [ConversationState(s) for s in raw_states.split(",")[:4]]
        except ValueError:
            raise InvalidInput("state must be ai, needs_human, agent or resolved") from None
    limit = query_int("limit") or 100
    found = await inbox.conversations(container().deps, session, states=states, limit=limit)
    return jsonify({"conversations": [conversation_payload(c) for c in found]})


@blueprint.get("/api/conversations/<int:conversation_id>")
async def get_conversation(conversation_id: int) -> Response:
    session = await current_session()
    found = await inbox.conversation(container().deps, session, checked_id(conversation_id))
    return jsonify(conversation_payload(found))


@blueprint.get("/api/conversations/<int:conversation_id>/messages")
async def list_messages(conversation_id: int) -> Response:
    """Catch up with `?after=<last seen id>`, page back with `?before=<first id>`."""
    session = await current_session()
    found = await inbox.messages(
        container().deps,
        session,
        checked_id(conversation_id),
        after=query_int("after"),
        before=query_int("before"),
        limit=query_int("limit") or 50,
    )
    return jsonify({"messages": [message_payload(m) for m in found]})


@blueprint.post("/api/conversations/<int:conversation_id>/messages")
async def send_reply(conversation_id: int) -> tuple[Response, int]:
    session = await checked_session()
    body = await parse(MessageIn)
    stored = await inbox.reply(
        container().deps,
        session,
        checked_id(conversation_id),
        body=body.body,
        client_id=body.client_id,
        attachments=body.attachments,
    )
    return jsonify(
        {"id": stored.message_id, "conversation": conversation_payload(stored.conversation)}
    ), (201 if stored.created else 200)


@blueprint.post("/api/conversations/<int:conversation_id>/notes")
async def add_note(conversation_id: int) -> tuple[Response, int]:
    session = await checked_session()
    body = await parse(MessageIn)
    stored = await inbox.add_note(
        container().deps,
        session,
        checked_id(conversation_id),
        body=body.body,
        client_id=body.client_id,
    )
    return jsonify({"id": stored.message_id}), (201 if stored.created else 200)


@blueprint.post("/api/conversations/<int:conversation_id>/read")
async def mark_read(conversation_id: int) -> Response:
    session = await checked_session()
    body = await parse(ReadIn)
    await inbox.mark_read(container().deps, session, checked_id(conversation_id), body.up_to)
    return jsonify({"ok": True})


@blueprint.post("/api/conversations/<int:conversation_id>/<action>")
async def change(conversation_id: int, action: str) -> Response:
    """`takeover`, `handback`, `resolve` or `reopen`."""
    session = await checked_session()
    try:
        chosen = Action(action)
    except ValueError:
        raise NotFound("no such action") from None
    if chosen is Action.REPLY:
        raise NotFound("no such action")
    summary = await inbox.change(container().deps, session, checked_id(conversation_id), chosen)
    return jsonify(conversation_payload(summary))
