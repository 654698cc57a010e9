"""The pure media rules: Twilio's media URL, WhatsApp's types and sizes, what the assistant is
told (https://www.twilio.com/docs/whatsapp/guidance-whatsapp-media-messages)."""

from __future__ import annotations

import pytest

from hotelchat.domain.media import (
    MB,
    check_media,
    check_twilio_media_url,
    content_matches,
    describe_media,
    media_kind,
)

ACCOUNT = "AC" + "1" * 32
MESSAGE = "MM" + "2" * 32
MEDIA = "ME" + "3" * 32
GOOD = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE}/Media/{MEDIA}"


def check(url: str, base: str = "https://api.twilio.com") -> tuple[str | None, str | None]:
    return check_twilio_media_url(url, base_url=base, account_sid=ACCOUNT, message_sid=MESSAGE)


def test_only_twilios_media_resource_of_this_message_is_accepted() -> None:
    assert check(GOOD) == (MEDIA, None)
    emulator = "http://127.0.0.1:9999"
    assert check(GOOD.replace("https://api.twilio.com", emulator), emulator) == (MEDIA, None)
    refused = {
        "http://api.twilio.com" + GOOD[len("https://api.twilio.com") :]: "host",
        GOOD.replace("api.twilio.com", "api.twilio.com.evil.example"): "host",
        GOOD.replace("api.twilio.com", "user@api.twilio.com"): "host",
        GOOD + "?redirect=https://evil.example": "host",
        GOOD + "/../../x": "resource",
        GOOD.replace(ACCOUNT, "AC" + "9" * 32): "another account",
        GOOD.replace(MESSAGE, "MM" + "9" * 32): "another account",
        GOOD.replace(MEDIA, "XX" + "3" * 32): "resource",
        "ftp://api.twilio.com/x": "host",
        "": "host",
    }
    for url, why in refused.items():
        media_sid, reason = check(url)
        assert media_sid is None and reason is not None and why in reason, url


def test_whatsapps_types_and_sizes() -> None:
    assert check_media("image/jpeg", 5 * MB) is None
    assert check_media("image/png", 5 * MB + 1) == "the file is larger than 5 MB, WhatsApp's limit"
    assert check_media("application/pdf", 16 * MB) is None
    assert check_media("video/mp4", 16 * MB + 1) == (
        "the file is larger than 16 MB, WhatsApp's limit"
    )
    assert check_media("Audio/OGG; codecs=opus", None) is None
    assert check_media("image/gif", 10) == "WhatsApp does not allow files of type image/gif"
    assert check_media("", 10) == "WhatsApp does not allow files of type unknown"


@pytest.mark.parametrize(
    ("types", "said"),
    [
        (["image/jpeg"], "the guest sent a photo"),
        (["image/jpeg", "image/png"], "the guest sent 2 photos"),
        (["audio/ogg"], "the guest sent a voice note"),
        (["image/webp", "application/pdf", "text/vcard"],
         "the guest sent a photo, a document and a contact card"),
        ([], ""),
    ],
)  # fmt: skip
def test_the_assistant_is_told_what_came(types: list[str], said: str) -> None:
    assert describe_media(types) == said


def test_content_must_be_what_it_claims() -> None:
    assert content_matches("image/jpeg", b"\xff\xd8\xff\xe0rest")
    assert not content_matches("image/jpeg", b"<html>")
    assert content_matches("image/png", b"\x89PNG\r\n\x1a\nrest")
    assert content_matches("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert not content_matches("image/webp", b"RIFF\x00\x00\x00\x00AVI ")
    assert not content_matches("application/pdf", b"MZ")
    assert content_matches("audio/ogg", b"anything")  # no magic known: taken as claimed
    assert media_kind("application/x-unknown") == "file"
