"""Media on WhatsApp: which files a message may carry, how big, where Twilio's copy must live,
and how to tell the assistant what the guest sent. Pure rules, no I/O.

WhatsApp's limits through Twilio (https://www.twilio.com/docs/whatsapp/guidance-whatsapp-media-messages,
"Message Size Limits" and "Supported MIME Types"): a message is at most 16 MB, an image at most
5 MB; images JPG/JPEG, PNG, WEBP; audio OGG, AMR, 3GP, AAC, MPEG; documents PDF, DOC, DOCX, PPTX,
XLSX; video MP4; contacts vCard. Twilio's own list of MIME types per channel:
https://www.twilio.com/docs/messaging/guides/accepted-mime-types

An inbound message's media are at `https://api.twilio.com/2010-04-01/Accounts/{AccountSid}/
Messages/{MessageSid}/Media/{MediaSid}` (the `MediaUrl{N}` webhook parameters,
https://www.twilio.com/docs/messaging/guides/webhook-request), readable with the account's
credentials until deleted (https://www.twilio.com/docs/messaging/api/media-resource).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

MB = 1024 * 1024
MAX_MEDIA_BYTES = 16 * MB  # one WhatsApp message, all its media together
MAX_IMAGE_BYTES = 5 * MB
MAX_MEDIA_PER_MESSAGE = 10  # Twilio's NumMedia is at most 10

TWILIO_MEDIA_HOST = "https://api.twilio.com"

# MIME type -> what a guest would call it. Only these are accepted, in or out.
WHATSAPP_MEDIA_TYPES: dict[str, str] = {
    "image/jpeg": "photo",
    "image/jpg": "photo",
    "image/png": "photo",
    "image/webp": "photo",
    "audio/ogg": "voice note",
    "audio/amr": "voice note",
    "audio/3gpp": "voice note",
    "audio/aac": "voice note",
    "audio/mpeg": "voice note",
    "audio/mp4": "voice note",
    "video/mp4": "video",
    "application/pdf": "document",
    "application/msword": "document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "document",
    "text/vcard": "contact card",
    "text/x-vcard": "contact card",
}
# What a file stored under a type is served as (extension of its download name).
EXTENSIONS: dict[str, str] = {
    "image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png", "image/webp": "webp",
    "audio/ogg": "ogg", "audio/amr": "amr", "audio/3gpp": "3gp", "audio/aac": "aac",
    "audio/mpeg": "mp3", "audio/mp4": "m4a", "video/mp4": "mp4", "application/pdf": "pdf",
    "application/msword": "doc", "text/vcard": "vcf", "text/x-vcard": "vcf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}  # fmt: skip

_MEDIA_PATH = re.compile(
    r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages/((?:MM|SM)[0-9a-f]{32})/Media/"
    r"(ME[0-9a-f]{32})$"
)


class MediaState(enum.StrEnum):
    """Where one media item is. `refused` and `failed` are final and shown to staff with the
    reason; nothing is deleted at Twilio unless the item was `stored`."""

    PENDING = "pending"  # known from the webhook, not yet downloaded
    STORED = "stored"  # in our object storage
    REFUSED = "refused"  # bad input: not Twilio's URL, too big, a type WhatsApp does not allow
    FAILED = "failed"  # Twilio's media endpoint did not answer within the bounded retries


@dataclass(frozen=True, slots=True)
class DeclaredMedia:
    """One `MediaUrl{N}` / `MediaContentType{N}` pair of a webhook, checked. `refusal` is set
    (and the item will never be downloaded) when the URL is not Twilio's media URL for this
    message and account."""

    position: int
    url: str
    content_type: str
    media_sid: str | None
    refusal: str | None = None


def normal_type(content_type: str) -> str:
    """`Image/JPEG; charset=x` -> `image/jpeg`."""
    return content_type.split(";", 1)[0].strip().lower()


def media_kind(content_type: str) -> str:
    """What a guest would call a file of this type: `photo`, `voice note`, `video`, `document`,
    `contact card`, or `file` for anything else."""
    return WHATSAPP_MEDIA_TYPES.get(normal_type(content_type), "file")


def is_image(content_type: str) -> bool:
    return media_kind(content_type) == "photo"


def size_limit(content_type: str) -> int:
    """The largest file of this type WhatsApp carries, in bytes."""
    return MAX_IMAGE_BYTES if is_image(content_type) else MAX_MEDIA_BYTES


def check_media(content_type: str, size_bytes: int | None) -> str | None:
    """Why WhatsApp would not carry this file (a sentence for staff), or None when it would.
    `size_bytes` None: not known yet (only the type is checked)."""
    kind = normal_type(content_type)
    if kind not in WHATSAPP_MEDIA_TYPES:
        return f"WhatsApp does not allow files of type {kind or 'unknown'}"
    if size_bytes is not None and size_bytes > size_limit(kind):
        return f"the file is larger than {size_limit(kind) // MB} MB, WhatsApp's limit"
    return None


def check_twilio_media_url(
    url: str, *, base_url: str, account_sid: str, message_sid: str
) -> tuple[str | None, str | None]:
    """`(media_sid, None)` when `url` is Twilio's media URL of message `message_sid` of account
    `account_sid` on `base_url` (https://api.twilio.com, or the emulator's loopback URL in
    tests), else `(None, why not)`. Anything else could make us fetch from anywhere with the
    hotel's Twilio credentials."""
    parts = urlsplit(url)
    base = urlsplit(base_url.rstrip("/"))
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or parts.query or parts.fragment:
        return None, "the media URL is not on Twilio's media host"
    path = parts.path[len(base.path) :] if parts.path.startswith(base.path) else ""
    match = _MEDIA_PATH.fullmatch(path)
    if match is None:
        return None, "the media URL is not a Twilio media resource"
    if match.group(1) != account_sid or match.group(2) != message_sid:
        return None, "the media URL belongs to another account or message"
    return match.group(3), None


def describe_media(content_types: Sequence[str]) -> str:
    """What the guest sent, for the assistant: `the guest sent a photo`, `the guest sent 2
    photos and a document`."""
    counts: dict[str, int] = {}
    for content_type in content_types:
        kind = media_kind(content_type)
        counts[kind] = counts.get(kind, 0) + 1
    parts = [f"a {kind}" if n == 1 else f"{n} {kind}s" for kind, n in counts.items()]
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"the guest sent {listed}"


def storage_key(hotel_id: int, media_id: int, content_type: str) -> str:
    """Where a media item lives in object storage: under its hotel's prefix."""
    return f"hotels/{hotel_id}/media/{media_id}.{EXTENSIONS.get(normal_type(content_type), 'bin')}"


_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/jpg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "application/pdf": (b"%PDF-",),
}


def content_matches(content_type: str, data: bytes) -> bool:
    """Whether the bytes look like the type claimed (for images and PDFs, by their magic
    numbers; WEBP is a RIFF container with `WEBP` at byte 8). Other types are taken as claimed."""
    kind = normal_type(content_type)
    if kind == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    magic = _MAGIC.get(kind)
    return magic is None or data.startswith(magic)
