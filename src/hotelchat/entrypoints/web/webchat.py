"""The guest web chat: a page per hotel (`/chat/<slug>`), embeddable in the hotel's website
through `/static/embed.js`, and the small JSON API its script uses.

The guest proves who they are with the signed token they were given (`Authorization: Bearer …`);
there is no cookie, so no cross-site request can act as them. They only ever see their own
conversation, without the staff's internal notes.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, render_template, request

from hotelchat.domain.errors import InvalidInput, Unauthenticated
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.dashboard import MessageIn, message_payload, parse, query_int
from hotelchat.entrypoints.web.security import add_page_headers, client_address
from hotelchat.services import webchat
from hotelchat.services.ports import WebGuest

blueprint = Blueprint("webchat", __name__)


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip() or None


async def current_guest(slug: str) -> WebGuest:
    """The guest of this request, who must belong to hotel `slug`; raises `NotFound` (no such
    hotel) or `Unauthenticated`."""
    hotel_id = await webchat.hotel_id_for(container().deps, slug)
    token = bearer_token()
    if token is None:
        raise Unauthenticated("start a chat first")
    return await webchat.guest_for(container().deps, hotel_id, token)


@blueprint.get("/chat/<slug>")
async def page(slug: str) -> Response:
    """The chat page; embeddable (frame-ancestors *) so hotel websites can frame it."""
    name = await webchat.hotel_name(container().deps, slug)
    html = await render_template(
        "chat.html", slug=slug, hotel_name=name, embedded=request.args.get("embed") == "1"
    )
    return add_page_headers(Response(html, content_type="text/html"), embeddable=True)


@blueprint.post("/chat/<slug>/session")
async def start(slug: str) -> Response:
    """Resume the guest of the bearer token, or start a new guest. Body: `{"name": "…",
    "reservation": "<link token>"}` (both optional; the token is the `r` of a reservation link
    the hotel sent). Answers the token to keep, the guest's conversation id and, when a
    reservation link was given, whether it tied the reservation to this chat."""
    data = await request.get_json(silent=True)
    if data is not None and not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    name = (data or {}).get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise InvalidInput("name must be a short text")
    link = (data or {}).get("reservation")
    if link is not None and not isinstance(link, str):
        raise InvalidInput("reservation must be the link's text")
    session = await webchat.start(
        container().deps,
        slug,
        token=bearer_token(),
        name=name,
        client=client_address(),
        reservation_link=link or None,
    )
    answer: dict[str, object] = {
        "token": session.token,
        "conversation_id": session.guest.conversation_id,
    }
    if session.reservation_linked is not None:
        answer["reservation_linked"] = session.reservation_linked
    return jsonify(answer)


@blueprint.get("/chat/<slug>/messages")
async def history(slug: str) -> Response:
    guest = await current_guest(slug)
    found = await webchat.history(
        container().deps, guest, after=query_int("after"), limit=query_int("limit") or 50
    )
    return jsonify({"messages": [_guest_view(message_payload(m), slug) for m in found]})


@blueprint.post("/chat/<slug>/messages")
async def send(slug: str) -> tuple[Response, int]:
    guest = await current_guest(slug)
    body = await parse(MessageIn)
    record = await webchat.send(
        container().deps,
        guest,
        body=body.body,
        client_id=body.client_id,
        attachments=body.attachments,
    )
    return jsonify({"id": record.message_id}), (200 if record.duplicate else 201)


def _guest_view(payload: dict[str, Any], slug: str) -> dict[str, object]:
    """What a guest may see of a message: no agent names, no error codes, no responder; its
    stored files, through the guest's own route."""
    view: dict[str, object] = {
        key: payload[key] for key in ("id", "direction", "author", "body", "created_at")
    }
    view["media"] = [
        {"id": m["id"], "kind": m["kind"], "content_type": m["content_type"],
         "url": f"/chat/{slug}/media/{m['id']}"}
        for m in payload["media"] if m["url"] is not None
    ]  # fmt: skip
    return view
