"""Media routes: files of a conversation for its hotel's agents (an authorised route, never a
public bucket), a web-chat guest's own files, uploads from both, and the short-lived signed link
Twilio fetches an outbound attachment through.

Another hotel's media id answers 404 exactly like one that does not exist. Uploads are
multipart (`file`), checked against WhatsApp's types and sizes, and answered with a token that
the message request then attaches.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from hotelchat.domain.errors import InvalidInput, NotFound, TooManyRequests
from hotelchat.domain.media import MAX_MEDIA_BYTES, is_image, media_kind
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.dashboard import checked_id
from hotelchat.entrypoints.web.security import checked_session, current_session
from hotelchat.entrypoints.web.webchat import current_guest
from hotelchat.services import inbox
from hotelchat.services import media as media_service
from hotelchat.services.ports import MediaItem

blueprint = Blueprint("media", __name__)

UPLOADS_PER_GUEST = "10/minute"
MAX_UPLOAD_BYTES = MAX_MEDIA_BYTES


def _file_response(item: MediaItem, data: bytes) -> Response:
    """The bytes with their type; images inline, anything else as a download. Never cached by
    shared caches, never sniffed into another type."""
    response = Response(data, content_type=item.content_type)
    disposition = "inline" if is_image(item.content_type) else "attachment"
    name = item.filename or f"{media_kind(item.content_type).replace(' ', '-')}-{item.id}"
    safe = "".join(c for c in name if c.isalnum() or c in "._-")[:60] or f"file-{item.id}"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{safe}"'
    response.headers["Cache-Control"] = "private, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


async def _uploaded() -> tuple[bytes, str, str | None]:
    """The posted `file` part: its bytes, declared type and name; raises `InvalidInput`."""
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 65536:
        raise InvalidInput("the file is larger than WhatsApp's 16 MB")
    if request.mimetype != "multipart/form-data":
        raise InvalidInput("expected multipart/form-data with a file")
    files = await request.files
    part = files.get("file")
    if part is None:
        raise InvalidInput("file: missing")
    data = part.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput("the file is larger than WhatsApp's 16 MB")
    return data, part.mimetype or "", part.filename


@blueprint.get("/api/media/<int:media_id>")
async def agent_file(media_id: int) -> Response:
    """A file of the agent's current hotel."""
    session = await current_session()
    item, data = await media_service.access_media(
        container().deps, session.hotel_id, checked_id(media_id)
    )
    return _file_response(item, data)


@blueprint.post("/api/conversations/<int:conversation_id>/uploads")
async def agent_upload(conversation_id: int) -> tuple[Response, int]:
    """Store a file an agent will attach to a reply; answers `{token, content_type, size}`."""
    session = await checked_session()
    await inbox.conversation(container().deps, session, checked_id(conversation_id))
    data, content_type, filename = await _uploaded()
    upload = await media_service.store_upload(
        container().deps, session.hotel_id, conversation_id,
        data=data, content_type=content_type, filename=filename,
    )  # fmt: skip
    return jsonify(
        {"token": upload.token, "content_type": upload.content_type, "size": upload.size_bytes}
    ), 201


@blueprint.get("/media/<token>")
async def signed_file(token: str) -> Response:
    """A file through a signed, expiring link (Twilio fetching an outbound attachment)."""
    deps = container().deps
    hotel_id, media_id = media_service.check_fetch_token(deps, token)
    item, data = await media_service.access_media(deps, hotel_id, media_id)
    return _file_response(item, data)


@blueprint.post("/chat/<slug>/uploads")
async def guest_upload(slug: str) -> tuple[Response, int]:
    """A photo a web-chat guest will send (images only, rate limited per guest)."""
    guest = await current_guest(slug)
    deps = container().deps
    if not await deps.limiter.hit(f"webchat-upload:{guest.guest_id}", limit=UPLOADS_PER_GUEST):
        raise TooManyRequests("you are sending photos too fast; wait a moment")
    data, content_type, filename = await _uploaded()
    upload = await media_service.store_upload(
        deps, guest.hotel_id, guest.conversation_id,
        data=data, content_type=content_type, filename=filename, images_only=True,
    )  # fmt: skip
    return jsonify({"token": upload.token, "content_type": upload.content_type}), 201


@blueprint.get("/chat/<slug>/media/<int:media_id>")
async def guest_file(slug: str, media_id: int) -> Response:
    """A file of the guest's own conversation (their photos, the hotel's attachments)."""
    guest = await current_guest(slug)
    deps = container().deps
    item, data = await media_service.access_media(deps, guest.hotel_id, checked_id(media_id))
    if item.conversation_id != guest.conversation_id or item.internal:
        raise NotFound("no such file")
    return _file_response(item, data)
