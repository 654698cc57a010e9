"""Media of messages: download a guest's WhatsApp files from Twilio into the hotel's object
storage (then delete Twilio's copy), take files agents and web-chat guests upload, and hand out
the short-lived links that Twilio and staff fetch them through.

The download job leases each media row in PostgreSQL, fetches it with the hotel's own Twilio
credentials (HTTP Basic, with a timeout and a streamed size cap), checks its type and size
against WhatsApp's limits (`domain.media`), stores it under `hotels/<id>/`, records it, and only
then deletes Twilio's copy (https://www.twilio.com/docs/messaging/api/media-resource#delete-a-media-resource).
A refused file keeps its reason and Twilio's copy; a Twilio outage is retried with arq's
`Retry(defer=…)` up to `Deps.max_attempts` times, then the item is `failed`. Each outcome is shown
to staff. A replayed webhook queues nothing (the message is already stored), and a re-run job finds
nothing left to do.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

import structlog

from hotelchat.domain.errors import (
    Forbidden,
    InvalidInput,
    MediaRefused,
    NotFound,
    TemporaryFailure,
    Unauthenticated,
    Unavailable,
)
from hotelchat.domain.media import (
    EXTENSIONS,
    MAX_MEDIA_BYTES,
    MediaState,
    check_media,
    content_matches,
    normal_type,
)
from hotelchat.domain.model import SenderRoute
from hotelchat.services import notify
from hotelchat.services.ports import (
    Deps,
    Download,
    MediaItem,
    MediaSource,
    MediaStore,
    NewMedia,
    ObjectStorage,
)

log = structlog.get_logger(__name__)

LEASE_SECONDS = 120.0
RETRY_SECONDS = 10.0
# Signed links: Twilio fetches an outbound attachment within seconds of the send; staff pages
# load theirs at once.
FETCH_TOKEN_PURPOSE = "hotelchat.media-fetch"  # noqa: S105 - a salt name, not a secret
FETCH_LINK_SECONDS = 15 * 60
UPLOAD_TOKEN_PURPOSE = "hotelchat.media-upload"  # noqa: S105
UPLOAD_TOKEN_SECONDS = 60 * 60
MAX_ATTACHMENTS = 5


def _ports(deps: Deps) -> tuple[MediaStore, ObjectStorage]:
    if deps.media is None or deps.storage is None:
        raise Unavailable("media storage is not configured")
    return deps.media, deps.storage


async def enqueue_download(deps: Deps, hotel_id: int, message_id: int) -> None:
    """Queue the download job; if the queue is down, the sweeper queues it later."""
    try:
        await deps.jobs.enqueue_media(hotel_id, message_id)
    except Unavailable:
        log.warning("media.enqueue_failed", hotel_id=hotel_id, message_id=message_id)


async def download_media(deps: Deps, hotel_id: int, message_id: int) -> str:
    """Job: download, check, store, and delete at Twilio each unfinished media item of inbound
    message `message_id`. Returns a summary (`stored 1, refused 0, failed 0`). Raises
    `TemporaryFailure` while some item may still succeed, `Unavailable` when PostgreSQL or the
    object storage is down."""
    store, storage = _ports(deps)
    claim = await store.claim_downloads(hotel_id, message_id, lease_seconds=LEASE_SECONDS)
    if claim is None:
        return "gone"
    counts = {"stored": 0, "refused": 0, "failed": 0, "retry": 0}
    for n, item in enumerate(claim.items):
        try:
            outcome = await _one(
                deps, store, storage, hotel_id, claim.route, claim.message_sid, item
            )
        except BaseException:
            # Storage or PostgreSQL down, or cancelled: let the retry take these at once
            # rather than wait out their leases. Best effort; the leases expire anyway.
            with contextlib.suppress(Unavailable):
                for left in claim.items[n:]:
                    await store.release(hotel_id, left.id, "")
            raise
        counts[outcome] += 1
    if counts["stored"] or counts["refused"] or counts["failed"]:
        await notify.media_changed(deps, claim.conversation_id, message_id)
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    log.info("media.downloaded", hotel_id=hotel_id, message_id=message_id, summary=summary)
    if counts["retry"]:
        raise TemporaryFailure("Twilio's media endpoint failed", defer_seconds=RETRY_SECONDS)
    if claim.retry_in is not None:
        raise TemporaryFailure("another job holds some media", defer_seconds=claim.retry_in)
    return summary


async def _one(
    deps: Deps,
    store: MediaStore,
    storage: ObjectStorage,
    hotel_id: int,
    route: SenderRoute | None,
    message_sid: str | None,
    item: MediaItem,
) -> str:
    """Finish one item; returns `stored`, `refused`, `failed` or `retry`."""
    source = deps.media_source
    if route is None or source is None or item.source_url is None:
        reason = "no Twilio account to fetch it with"
        await store.mark_final(hotel_id, item.id, MediaState.FAILED, reason)
        return "failed"
    if item.state is MediaState.PENDING:
        try:
            download = await _checked_download(source, route, item.source_url)
        except MediaRefused as exc:
            await store.mark_final(hotel_id, item.id, MediaState.REFUSED, exc.message)
            log.warning("media.refused", hotel_id=hotel_id, media_id=item.id, reason=exc.message)
            return "refused"
        except TemporaryFailure as exc:
            if item.attempts >= deps.max_attempts:
                reason = f"{exc.message}; gave up after {item.attempts} attempts"
                await store.mark_final(hotel_id, item.id, MediaState.FAILED, reason)
                log.warning("media.failed", hotel_id=hotel_id, media_id=item.id, error=reason)
                return "failed"
            await store.release(hotel_id, item.id, exc.message)
            log.warning("media.retry", hotel_id=hotel_id, media_id=item.id, error=exc.message)
            return "retry"
        key = object_key(hotel_id, download.content_type)
        await storage.put(key, download.data, download.content_type)
        await store.mark_stored(
            hotel_id, item.id, storage_key=key, size_bytes=len(download.data),
            content_type=download.content_type,
        )  # fmt: skip
    if item.media_sid is not None and message_sid is not None:
        try:
            await source.delete(route, message_sid, item.media_sid)
        except TemporaryFailure as exc:
            # Stored and safe; the copy at Twilio goes on a later attempt.
            await store.release(hotel_id, item.id, "")
            log.warning("media.delete_retry", hotel_id=hotel_id, media_id=item.id,
                        error=exc.message)  # fmt: skip
            return "retry"
        await store.mark_twilio_deleted(hotel_id, item.id)
    return "stored"


async def _checked_download(source: MediaSource, route: SenderRoute, url: str) -> Download:
    """The file at `url`, its type normalised, within WhatsApp's limits; raises `MediaRefused`
    or `TemporaryFailure`."""
    download = await source.download(route, url, max_bytes=MAX_MEDIA_BYTES)
    content_type = normal_type(download.content_type)
    refusal = check_media(content_type, len(download.data))
    if refusal is None and not content_matches(content_type, download.data):
        refusal = f"the file's content is not the {content_type} it claims to be"
    if refusal is not None:
        raise MediaRefused(refusal)
    return Download(content_type, download.data)


def object_key(hotel_id: int, content_type: str) -> str:
    """A new, unguessable key under the hotel's prefix."""
    extension = EXTENSIONS.get(normal_type(content_type), "bin")
    return f"hotels/{hotel_id}/media/{secrets.token_hex(16)}.{extension}"


async def requeue_stalled(deps: Deps, *, min_age_seconds: int, limit: int = 100) -> int:
    """Queue again the downloads a crash or a queue outage left without a job."""
    if deps.media is None:
        return 0
    stalled = await deps.media.stalled(min_age_seconds=min_age_seconds, limit=limit)
    for hotel_id, message_id in stalled:
        await enqueue_download(deps, hotel_id, message_id)
    return len(stalled)


# --- uploads (agents' attachments, web-chat guests' photos) ---------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    """A file stored for a message not written yet; `token` names it to the message request."""

    token: str
    content_type: str
    size_bytes: int
    filename: str | None


async def store_upload(
    deps: Deps,
    hotel_id: int,
    conversation_id: int,
    *,
    data: bytes,
    content_type: str,
    filename: str | None,
    images_only: bool = False,
) -> Upload:
    """Store an uploaded file for conversation `conversation_id` after checking it against
    WhatsApp's types and sizes (only images with `images_only`). Returns a signed token for
    the message request that attaches it. Raises `InvalidInput`, `Unavailable`."""
    _store, storage = _ports(deps)
    kind = normal_type(content_type)
    if images_only and not kind.startswith("image/"):
        raise InvalidInput("only photos can be attached here")
    refusal = check_media(kind, len(data))
    if refusal is not None:
        raise InvalidInput(refusal)
    if not data:
        raise InvalidInput("the file is empty")
    if not content_matches(kind, data):
        raise InvalidInput(f"the file is not a {kind} file")
    name = (filename or "").replace("/", "_").replace("\\", "_").strip()[:200] or None
    key = object_key(hotel_id, kind)
    await storage.put(key, data, kind)
    token = deps.tokens.sign(
        UPLOAD_TOKEN_PURPOSE,
        {"h": hotel_id, "c": conversation_id, "k": key, "t": kind, "s": len(data), "n": name},
    )
    log.info("media.uploaded", hotel_id=hotel_id, conversation_id=conversation_id, size=len(data))
    return Upload(token, kind, len(data), name)


def redeem_uploads(
    deps: Deps, hotel_id: int, conversation_id: int, tokens: list[str]
) -> tuple[NewMedia, ...]:
    """The files that upload tokens name, which must have been uploaded to this conversation
    of this hotel. Raises `InvalidInput` (too many, or a token that is not one of ours) and
    `Forbidden` (another conversation's upload)."""
    if len(tokens) > MAX_ATTACHMENTS:
        raise InvalidInput(f"at most {MAX_ATTACHMENTS} attachments")
    found = []
    for token in tokens:
        try:
            data = deps.tokens.verify(
                UPLOAD_TOKEN_PURPOSE, token, max_age_seconds=UPLOAD_TOKEN_SECONDS
            )
        except Unauthenticated as exc:
            raise InvalidInput("an attachment is not a valid upload") from exc
        if data.get("h") != hotel_id or data.get("c") != conversation_id:
            raise Forbidden("that upload belongs to another conversation")
        found.append(NewMedia(str(data["k"]), str(data["t"]), int(data["s"]), data.get("n")))
    total = sum(m.size_bytes for m in found)
    if total > MAX_MEDIA_BYTES:
        raise InvalidInput("the attachments together are larger than WhatsApp's 16 MB")
    return tuple(found)


# --- reading ------------------------------------------------------------------------------


def fetch_token(deps: Deps, hotel_id: int, media_id: int) -> str:
    """A signed token for fetching one media item without a session (Twilio fetching an
    outbound attachment), valid `FETCH_LINK_SECONDS`."""
    return deps.tokens.sign(FETCH_TOKEN_PURPOSE, {"h": hotel_id, "m": media_id})


def fetch_url(deps: Deps, hotel_id: int, media_id: int) -> str:
    """The short-lived public link to one media item (`/media/<token>`) that Twilio fetches an
    outbound attachment from; raises `Unavailable` when no public URL is configured."""
    if deps.public_url is None:
        raise Unavailable("PUBLIC_BASE_URL is needed to send attachments")
    return f"{deps.public_url}/media/{fetch_token(deps, hotel_id, media_id)}"


def check_fetch_token(deps: Deps, token: str) -> tuple[int, int]:
    """(hotel_id, media_id) of a valid, unexpired fetch token; raises `NotFound` otherwise
    (a forged or expired link looks like a missing file)."""
    try:
        data = deps.tokens.verify(FETCH_TOKEN_PURPOSE, token, max_age_seconds=FETCH_LINK_SECONDS)
    except Unauthenticated as exc:  # forged, expired or malformed: all not found
        raise NotFound("no such file") from exc
    hotel_id, media_id = data.get("h"), data.get("m")
    if not isinstance(hotel_id, int) or not isinstance(media_id, int):
        raise NotFound("no such file")
    return hotel_id, media_id


async def access_media(deps: Deps, hotel_id: int, media_id: int) -> tuple[MediaItem, bytes]:
    """A stored media item of hotel `hotel_id` and its bytes; another hotel's id, or one not
    stored, is `NotFound`."""
    store, storage = _ports(deps)
    item = await store.item(hotel_id, media_id)
    if item is None or item.state is not MediaState.STORED or item.storage_key is None:
        raise NotFound("no such file")
    if not item.storage_key.startswith(f"hotels/{hotel_id}/"):
        raise NotFound("no such file")  # never serve across a hotel's prefix
    return item, await storage.get(item.storage_key)
