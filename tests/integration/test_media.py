"""Media end to end on real PostgreSQL and Redis: a guest's WhatsApp photo from the Twilio
emulator (Basic auth, DELETE) into object storage (a folder, and moto's real S3 server on
loopback), every bad input (not Twilio's URL, oversized, a type WhatsApp does not allow, content
that is not what it claims, Twilio's media endpoint down), replayed webhooks, cross-tenant
access, uploads, and the assistant told what the guest sent."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import asyncpg
import pytest
from moto.server import ThreadedMotoServer
from quart import Quart
from quart.typing import TestClientProtocol as Client

from hotelchat.adapters.embedded import free_port
from hotelchat.adapters.queue import create_redis
from hotelchat.adapters.storage import FilesystemStorage, S3Storage
from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.errors import (
    InvalidInput,
    MediaRefused,
    NotFound,
    TemporaryFailure,
    Unavailable,
)
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import inbound as inbound_service
from hotelchat.services import media as media_service
from hotelchat.services import outbound
from hotelchat.services.assistant_settings import AssistantChanges, change_assistant
from tests.conftest import PUBLIC_URL, Tenant, create_agent, run_jobs
from tests.helpers import (
    INBOUND_PATH,
    csrf_of,
    inbound,
    login,
    media_webhook,
    reply_row,
    signature,
)
from tests.live import live_server, login_cookie

# The smallest files that are what they claim (magic numbers first).
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + secrets.token_bytes(2000) + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(500)
PDF = b"%PDF-1.4\n" + secrets.token_bytes(800) + b"\n%%EOF"


def with_media(
    tenant: Tenant, twilio: TwilioEmulator, files: list[tuple[str, bytes]], body: str = ""
) -> dict[str, str]:
    return media_webhook(tenant, twilio, files, body)


async def deliver(container: Container, tenant: Tenant, params: dict[str, str]) -> int:
    record = await inbound_service.receive_whatsapp(
        container.deps, params, url=PUBLIC_URL + INBOUND_PATH, signature=signature(tenant, params)
    )
    assert record.message_id is not None
    return record.message_id


async def media_rows(admin: asyncpg.Connection, message_id: int) -> list[asyncpg.Record]:
    return await admin.fetch(
        "SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id
    )


def sid_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


# --- the happy path -------------------------------------------------------------------------


async def test_a_guest_photo_is_stored_under_the_hotel_and_deleted_at_twilio(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)])
    message_id = await deliver(container, tenant, params)
    [row] = await media_rows(admin, message_id)
    assert row["state"] == "pending"
    await run_jobs(settings)
    [row] = await media_rows(admin, message_id)
    assert row["state"] == "stored", row["error"]
    assert row["storage_key"].startswith(f"hotels/{tenant.hotel_id}/media/")
    assert row["size_bytes"] == len(JPEG)
    assert row["twilio_deleted_at"] is not None
    assert container.deps.storage is not None
    assert await container.deps.storage.get(row["storage_key"]) == JPEG
    held = twilio_emulator.media(sid_of(params["MediaUrl0"]))
    assert held.deleted and held.downloads == 1
    # A photo with no text goes to staff, who can see it; the reason says what came.
    reply = await reply_row(admin, message_id)
    assert reply["conversation_state"] == "needs_human"
    assert reply["handoff_reason"] == "the guest sent a photo"


async def test_the_assistant_is_told_what_the_guest_sent(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
    admin: asyncpg.Connection,
) -> None:
    params = with_media(
        tenant, twilio_emulator, [("image/jpeg", JPEG), ("application/pdf", PDF)],
        body="Is parking included?",
    )  # fmt: skip
    message_id = await deliver(container, tenant, params)
    await run_jobs(settings)
    user = openai_emulator.requests[-1]["messages"][-1]
    assert user["content"] == "Is parking included?\n\n(the guest sent a photo and a document)"
    assert [r["state"] for r in await media_rows(admin, message_id)] == ["stored", "stored"]


async def test_image_understanding_passes_the_photo_to_the_model_as_a_content_part(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
    admin: asyncpg.Connection,
) -> None:
    assert not (await container.deps.hotels.assistant_settings(tenant.hotel_id)).image_understanding
    await change_assistant(
        container.deps, tenant.hotel_id, AssistantChanges(image_understanding=True)
    )
    params = with_media(tenant, twilio_emulator, [("image/png", PNG)])
    message_id = await deliver(container, tenant, params)
    await run_jobs(settings)
    parts = openai_emulator.requests[-1]["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "(the guest sent a photo)"}
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    reply = await reply_row(admin, message_id)
    assert reply["author"] == "ai" and reply["responder"] == "openai"


# --- bad input ------------------------------------------------------------------------------


async def test_a_media_url_that_is_not_twilios_is_refused_and_never_fetched(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    params = inbound(tenant, "")
    base = twilio_emulator.url + "/2010-04-01/Accounts/"
    urls = [
        "https://evil.example/photo.jpg",
        twilio_emulator.url + "/anything/else.jpg",
        # Twilio's shape, but another hotel's account, or another message.
        f"{base}{other_tenant.account_sid}/Messages/{params['MessageSid']}/Media/ME{'a' * 32}",
        f"{base}{tenant.account_sid}/Messages/SM{'b' * 32}/Media/ME{'a' * 32}",
    ]
    params["NumMedia"] = str(len(urls))
    for n, url in enumerate(urls):
        params[f"MediaUrl{n}"], params[f"MediaContentType{n}"] = url, "image/jpeg"
    message_id = await deliver(container, tenant, params)
    await run_jobs(settings)
    rows = await media_rows(admin, message_id)
    assert [r["state"] for r in rows] == ["refused"] * 4
    assert rows[0]["error"] == "the media URL is not on Twilio's media host"
    assert rows[1]["error"] == "the media URL is not a Twilio media resource"
    assert (
        rows[2]["error"]
        == rows[3]["error"]
        == "the media URL belongs to another account or message"
    )
    assert twilio_emulator.media_requests == 0  # nothing was fetched
    # The message itself is kept, and staff take it.
    assert (await reply_row(admin, message_id))["conversation_state"] == "needs_human"


async def test_oversized_and_disallowed_files_are_refused_with_twilios_copy_kept(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    big_photo = b"\xff\xd8\xff" + b"\x00" * (5 * 1024 * 1024)  # over WhatsApp's 5 MB for images
    huge_pdf = b"%PDF-" + b"\x00" * (16 * 1024 * 1024)  # over the 16 MB cap: the stream stops
    params = with_media(
        tenant, twilio_emulator,
        [("image/jpeg", big_photo), ("application/pdf", huge_pdf),
         ("application/x-msdownload", b"MZ" + b"\x00" * 100),
         ("image/jpeg", b"<html>not a photo</html>")],
    )  # fmt: skip
    message_id = await deliver(container, tenant, params)
    await run_jobs(settings)
    rows = await media_rows(admin, message_id)
    assert [r["state"] for r in rows] == ["refused"] * 4
    assert rows[0]["error"] == "the file is larger than 5 MB, WhatsApp's limit"
    assert rows[1]["error"] == "the file is larger than 16 MB"
    assert rows[2]["error"] == "WhatsApp does not allow files of type application/x-msdownload"
    assert rows[3]["error"] == "the file's content is not the image/jpeg it claims to be"
    for n in range(4):
        assert not twilio_emulator.media(sid_of(params[f"MediaUrl{n}"])).deleted
    assert twilio_emulator.media(sid_of(params["MediaUrl2"])).downloads == 0  # refused on sight


async def test_twilio_media_down_is_retried_a_bounded_number_of_times_then_failed(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator, admin: asyncpg.Connection
) -> None:
    deps = container.deps
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)])
    message_id = await deliver(container, tenant, params)
    twilio_emulator.fail_media_next(503, times=100)
    for attempt in range(1, deps.max_attempts):
        with pytest.raises(TemporaryFailure):
            await media_service.download_media(deps, tenant.hotel_id, message_id)
        [row] = await media_rows(admin, message_id)
        assert (row["state"], row["attempts"]) == ("pending", attempt)
        assert row["error"] == "Twilio's media endpoint answered 503"
    assert await media_service.download_media(deps, tenant.hotel_id, message_id) == (
        "stored 0, refused 0, failed 1, retry 0"
    )
    [row] = await media_rows(admin, message_id)
    assert row["state"] == "failed"
    assert row["error"] == (
        f"Twilio's media endpoint answered 503; gave up after {deps.max_attempts} attempts"
    )
    assert not twilio_emulator.media(sid_of(params["MediaUrl0"])).deleted


async def test_a_twilio_outage_that_passes_loses_nothing(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator, admin: asyncpg.Connection
) -> None:
    deps = container.deps
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)])
    message_id = await deliver(container, tenant, params)
    twilio_emulator.fail_media_next(500, times=2)
    for _ in range(2):
        with pytest.raises(TemporaryFailure):
            await media_service.download_media(deps, tenant.hotel_id, message_id)
    assert await media_service.download_media(deps, tenant.hotel_id, message_id) == (
        "stored 1, refused 0, failed 0, retry 0"
    )
    [row] = await media_rows(admin, message_id)
    assert row["state"] == "stored" and row["error"] is None


async def test_a_replayed_webhook_downloads_its_media_once(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)], body="Look")
    first = await deliver(container, tenant, params)
    await run_jobs(settings)
    again = await deliver(container, tenant, params)
    await run_jobs(settings)
    assert again == first
    assert len(await media_rows(admin, first)) == 1
    assert twilio_emulator.media(sid_of(params["MediaUrl0"])).downloads == 1
    # And a re-run job finds nothing left to do.
    assert await media_service.download_media(container.deps, tenant.hotel_id, first) == (
        "stored 0, refused 0, failed 0, retry 0"
    )


async def test_a_malformed_media_webhook_is_refused(container: Container, tenant: Tenant) -> None:
    params = inbound(tenant, "")
    params["NumMedia"] = "1"  # and no MediaUrl0
    with pytest.raises(InvalidInput, match="MediaUrl0"):
        await deliver(container, tenant, params)
    params["MediaUrl0"] = "https://api.twilio.com/x"
    with pytest.raises(InvalidInput, match="MediaContentType0"):
        await deliver(container, tenant, params)
    params["NumMedia"] = "11"
    with pytest.raises(InvalidInput, match="NumMedia"):
        await deliver(container, tenant, params)


# --- who may see a file ---------------------------------------------------------------------


@dataclass
class Web:
    app: Quart
    client: Client


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[Web]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield Web(app, test_app.test_client())


async def stored_photo(
    container: Container, settings: Settings, tenant: Tenant, twilio: TwilioEmulator
) -> tuple[int, int]:
    """(message id, media id) of a guest photo, downloaded."""
    message_id = await deliver(
        container, tenant, with_media(tenant, twilio, [("image/jpeg", JPEG)])
    )
    await run_jobs(settings)
    [item] = await container.deps.media.of_message(tenant.hotel_id, message_id)  # type: ignore[union-attr]
    return message_id, item.id


async def test_only_agents_of_the_hotel_see_its_media(
    web: Web,
    container: Container,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    message_id, media_id = await stored_photo(container, settings, tenant, twilio_emulator)
    assert (await web.client.get(f"/api/media/{media_id}")).status_code == 401
    await create_agent(admin, "b@b.test", [other_tenant.slug])
    assert await login(web.client, "b@b.test") == 303
    refused = await web.client.get(f"/api/media/{media_id}")
    assert refused.status_code == 404  # exactly like a file that does not exist
    assert (await web.client.get("/api/media/99999999")).status_code == 404
    # The signed link is bound to its hotel and media too: a forged one is not found.
    assert (await web.client.get("/media/forged-token")).status_code == 404

    assert web.client.cookie_jar is not None
    web.client.cookie_jar.clear()
    await create_agent(admin, "a@a.test", [tenant.slug])
    assert await login(web.client, "a@a.test") == 303
    shown = await web.client.get(f"/api/media/{media_id}")
    assert shown.status_code == 200
    assert await shown.get_data() == JPEG
    assert shown.headers["Content-Type"] == "image/jpeg"
    assert shown.headers["Content-Disposition"].startswith("inline")
    assert shown.headers["Cache-Control"].startswith("private")
    conversation = await admin.fetchval(
        "SELECT conversation_id FROM messages WHERE id = $1", message_id
    )
    timeline = await (
        await web.client.get(f"/api/conversations/{conversation}/messages")
    ).get_json()
    [entry] = [m for m in timeline["messages"] if m["id"] == message_id]
    assert entry["media"] == [
        {"id": media_id, "kind": "photo", "content_type": "image/jpeg", "state": "stored",
         "error": None, "size": len(JPEG), "filename": None, "url": f"/api/media/{media_id}"}
    ]  # fmt: skip


async def test_storage_keys_never_leave_the_hotels_prefix(
    container: Container, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection,
    settings: Settings, twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    _message_id, media_id = await stored_photo(container, settings, tenant, twilio_emulator)
    # A row pointing into another hotel's prefix (as if forged) is never served.
    await admin.execute(
        "UPDATE media SET storage_key = $2 WHERE id = $1",
        media_id,
        f"hotels/{other_tenant.hotel_id}/media/x.jpg",
    )
    with pytest.raises(NotFound):
        await media_service.access_media(container.deps, tenant.hotel_id, media_id)
    storage = FilesystemStorage(settings.media_dir)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await storage.get("hotels/1/../2/media/x.jpg")


# --- uploads and outbound attachments -------------------------------------------------------


async def upload(
    client: Client, path: str, headers: dict[str, str], data: bytes, content_type: str
) -> Any:
    boundary = "hcboundary" + secrets.token_hex(4)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return await client.post(
        path,
        data=body,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


async def test_agent_uploads_refuse_bad_files_and_foreign_tokens(
    web: Web,
    container: Container,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    message_id, _ = await stored_photo(container, settings, tenant, twilio_emulator)
    conversation = await admin.fetchval(
        "SELECT conversation_id FROM messages WHERE id = $1", message_id
    )
    await create_agent(admin, "a@a.test", [tenant.slug])
    assert await login(web.client, "a@a.test") == 303
    csrf = {"X-CSRF-Token": await csrf_of(web.client)}
    path = f"/api/conversations/{conversation}/uploads"
    assert (
        await upload(web.client, path, {}, PDF, "application/pdf")
    ).status_code == 403  # no CSRF
    bad = await upload(web.client, path, csrf, b"MZ\x90", "application/x-msdownload")
    assert bad.status_code == 400
    assert (await bad.get_json())["error"][
        "message"
    ] == "WhatsApp does not allow files of type application/x-msdownload"
    liar = await upload(web.client, path, csrf, b"plain text", "application/pdf")
    assert (await liar.get_json())["error"]["message"] == "the file is not a application/pdf file"
    big = await upload(
        web.client, path, csrf, b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024), "image/png"
    )
    assert (await big.get_json())["error"][
        "message"
    ] == "the file is larger than 5 MB, WhatsApp's limit"
    assert (
        await upload(web.client, "/api/conversations/999999/uploads", csrf, PDF, "application/pdf")
    ).status_code == 404
    ok = await upload(web.client, path, csrf, PDF, "application/pdf")
    assert ok.status_code == 201
    token = (await ok.get_json())["token"]
    # A token for another conversation, and a forged one, attach nothing.
    other = await admin.fetchval(
        """INSERT INTO conversations (hotel_id, guest_id, channel)
           SELECT hotel_id, id, 'web' FROM guests WHERE hotel_id = $1 LIMIT 1 RETURNING id""",
        tenant.hotel_id,
    )
    headers = {**csrf}
    for conv, tokens, status in ((other, [token], 403), (conversation, ["forged"], 400)):
        answer = await web.client.post(
            f"/api/conversations/{conv}/messages",
            json={"body": "", "client_id": str(uuid.uuid4()), "attachments": tokens},
            headers=headers,
        )
        assert answer.status_code == status, await answer.get_json()
    assert await admin.fetchval("SELECT count(*) FROM media WHERE filename IS NOT NULL") == 0


@pytest.fixture
def moto_s3() -> Iterator[str]:
    """moto's S3 server (the real S3 wire format) on a loopback port."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_the_s3_backend_against_a_real_s3_server(
    moto_s3: str,
    build_container: Callable[..., Awaitable[Container]],
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    storage = S3Storage(
        bucket="hotelchat-media", endpoint_url=moto_s3, region="us-east-1",
        access_key_id="test", secret_access_key="test-secret", timeout=5,
    )  # fmt: skip
    client = await storage._s3()
    await client.create_bucket(Bucket="hotelchat-media")
    await storage.put("hotels/1/media/a.jpg", JPEG, "image/jpeg")
    assert await storage.get("hotels/1/media/a.jpg") == JPEG
    head = await client.head_object(Bucket="hotelchat-media", Key="hotels/1/media/a.jpg")
    assert head["ContentType"] == "image/jpeg"
    await storage.delete("hotels/1/media/a.jpg")
    with pytest.raises(NotFound):
        await storage.get("hotels/1/media/a.jpg")
    await storage.close()

    container = await build_container(
        s3_bucket="hotelchat-media", s3_endpoint_url=moto_s3,
        s3_access_key_id="test", s3_secret_access_key="test-secret",
    )  # fmt: skip
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)], body="See this")
    message_id = await deliver(container, tenant, params)
    await run_jobs(container.settings)
    [row] = await media_rows(admin, message_id)
    assert row["state"] == "stored"
    listed = await client_list(moto_s3)
    assert listed == [row["storage_key"]]
    item, data = await media_service.access_media(container.deps, tenant.hotel_id, row["id"])
    assert data == JPEG and item.content_type == "image/jpeg"


async def client_list(endpoint: str) -> list[str]:
    storage = S3Storage(
        bucket="hotelchat-media", endpoint_url=endpoint, region="us-east-1",
        access_key_id="test", secret_access_key="test-secret", timeout=5,
    )  # fmt: skip
    client = await storage._s3()
    try:
        answer = await client.list_objects_v2(Bucket="hotelchat-media")
        return [o["Key"] for o in answer.get("Contents", [])]
    finally:
        await storage.close()


async def test_an_agents_attachment_reaches_twilio_through_a_signed_link(
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    async with live_server(settings, own_url=True) as live:
        container = live.container
        message_id = await deliver(container, tenant, inbound(tenant, "Can you send the menu?"))
        conversation = await admin.fetchval(
            "SELECT conversation_id FROM messages WHERE id = $1", message_id
        )
        await create_agent(admin, "a@a.test", [tenant.slug])
        cookie = await login_cookie(live.url, "a@a.test")
        async with aiohttp.ClientSession() as http:
            from tests.helpers import as_browser

            headers = await as_browser(http, live, cookie)
            form = aiohttp.FormData()
            form.add_field("file", PDF, filename="menu.pdf", content_type="application/pdf")
            async with http.post(
                f"{live.url}/api/conversations/{conversation}/uploads", data=form, headers=headers
            ) as answer:
                assert answer.status == 201, await answer.text()
                token = (await answer.json())["token"]
            async with http.post(
                f"{live.url}/api/conversations/{conversation}/messages",
                json={"body": "Here it is", "client_id": str(uuid.uuid4()), "attachments": [token]},
                headers=headers,
            ) as answer:
                assert answer.status == 201, await answer.text()
                reply_id = (await answer.json())["id"]
        assert await outbound.send_outbound(container.deps, tenant.hotel_id, reply_id) == "sent"
        [sent] = twilio_emulator.sent()
        assert sent.body == "Here it is"
        [fetched] = sent.media
        assert fetched.url.startswith(live.url + "/media/")
        assert (fetched.status, fetched.content_type, fetched.data) == (200, "application/pdf", PDF)
        # The link is signed: changed, it is not found.
        async with aiohttp.ClientSession() as http, http.get(fetched.url + "x") as answer:
            assert answer.status == 404


# --- the web chat ---------------------------------------------------------------------------


async def guest_session(client: Client, slug: str) -> tuple[dict[str, str], int]:
    started = await (await client.post(f"/chat/{slug}/session", json={})).get_json()
    return {"Authorization": f"Bearer {started['token']}"}, started["conversation_id"]


async def test_a_web_chat_guest_sends_a_photo_that_only_they_and_staff_see(
    web: Web,
    settings: Settings,
    tenant: Tenant,
    openai_emulator: OpenAIEmulator,
    admin: asyncpg.Connection,
) -> None:
    slug = tenant.slug
    guest, conversation = await guest_session(web.client, slug)
    intruder, _ = await guest_session(web.client, slug)
    path = f"/chat/{slug}/uploads"
    assert (await upload(web.client, path, {}, PNG, "image/png")).status_code == 401
    pdf = await upload(web.client, path, guest, PDF, "application/pdf")
    assert (await pdf.get_json())["error"]["message"] == "only photos can be attached here"
    ok = await upload(web.client, path, guest, PNG, "image/png")
    assert ok.status_code == 201
    token = (await ok.get_json())["token"]
    # Another guest cannot send this guest's upload.
    stolen = await web.client.post(
        f"/chat/{slug}/messages",
        json={"body": "", "client_id": str(uuid.uuid4()), "attachments": [token]},
        headers=intruder,
    )
    assert stolen.status_code == 403
    sent = await web.client.post(
        f"/chat/{slug}/messages",
        json={"body": "", "client_id": str(uuid.uuid4()), "attachments": [token]},
        headers=guest,
    )
    assert sent.status_code == 201, await sent.get_json()
    history = await (await web.client.get(f"/chat/{slug}/messages", headers=guest)).get_json()
    [mine] = [m for m in history["messages"] if m["author"] == "guest"]
    [item] = mine["media"]
    assert item["kind"] == "photo" and item["url"] == f"/chat/{slug}/media/{item['id']}"
    own = await web.client.get(item["url"], headers=guest)
    assert own.status_code == 200 and await own.get_data() == PNG
    assert (await web.client.get(item["url"], headers=intruder)).status_code == 404
    assert (await web.client.get(item["url"])).status_code == 401
    # A photo with no text goes to staff (image understanding is off by default).
    await run_jobs(settings)
    reply = await reply_row(admin, mine["id"])
    assert reply["handoff_reason"] == "the guest sent a photo"
    assert not openai_emulator.requests
    assert conversation == reply["conversation_id"]


async def test_row_level_security_keeps_media_rows_in_their_hotel(
    container: Container,
    settings: Settings,
    backing: Any,
    tenant: Tenant,
    other_tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    _message_id, media_id = await stored_photo(container, settings, tenant, twilio_emulator)
    assert container.deps.media is not None
    assert await container.deps.media.item(tenant.hotel_id, media_id) is not None
    assert await container.deps.media.item(other_tenant.hotel_id, media_id) is None
    with pytest.raises(NotFound):
        await media_service.access_media(container.deps, other_tenant.hotel_id, media_id)
    conn = await asyncpg.connect(backing.app_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM media") == 0  # no tenant: nothing
    finally:
        await conn.close()
    assert await admin.fetchval("SELECT count(*) FROM media") == 1


async def test_the_openai_emulator_takes_image_parts_and_refuses_malformed_ones(
    openai_emulator: OpenAIEmulator,
) -> None:
    import openai

    client = openai.AsyncOpenAI(
        base_url=openai_emulator.url + "/v1", api_key="sk-test-" + "k" * 24, max_retries=0
    )
    try:
        good: Any = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": good}]
        )
        assert answer.choices[0].message.content
        bad: Any = [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]
        with pytest.raises(openai.BadRequestError, match="Invalid content part"):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": bad}]
            )
    finally:
        await client.close()


async def test_downloads_a_lost_job_left_behind_are_queued_again_by_the_sweeper(
    container: Container,
    settings: Settings,
    backing: Any,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)], body="Hello")
    message_id = await deliver(container, tenant, params)
    redis = create_redis(backing.redis_url, timeout=5)
    try:
        assert await redis.delete(f"arq:job:media:{message_id}") == 1  # the job is lost
        await redis.zrem("arq:queue", f"media:{message_id}")
    finally:
        await redis.aclose()
    assert await media_service.requeue_stalled(container.deps, min_age_seconds=60) == 0  # too new
    await admin.execute("UPDATE media SET created_at = now() - interval '2 minutes'")
    assert await media_service.requeue_stalled(container.deps, min_age_seconds=60) == 1
    await run_jobs(settings)
    [row] = await media_rows(admin, message_id)
    assert row["state"] == "stored"


async def test_the_emulator_serves_media_only_to_the_accounts_own_credentials(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator
) -> None:
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)])
    source = container.deps.media_source
    assert source is not None
    route = await container.store.route_whatsapp_sender(tenant.phone_number)
    assert route is not None
    wrong = replace(route, auth_token="not-the-token")
    with pytest.raises(TemporaryFailure, match="401"):
        await source.download(wrong, params["MediaUrl0"], max_bytes=1024 * 1024)
    with pytest.raises(TemporaryFailure):
        await source.delete(wrong, params["MessageSid"], sid_of(params["MediaUrl0"]))
    got = await source.download(route, params["MediaUrl0"], max_bytes=1024 * 1024)
    assert got.data == JPEG and got.content_type == "image/jpeg"
    await source.delete(route, params["MessageSid"], sid_of(params["MediaUrl0"]))
    await source.delete(route, params["MessageSid"], sid_of(params["MediaUrl0"]))  # gone: fine
    with pytest.raises(MediaRefused):
        await source.download(route, params["MediaUrl0"], max_bytes=1024 * 1024)


async def test_storage_down_keeps_the_media_pending_for_the_retry(
    build_container: Callable[..., Awaitable[Container]],
    container: Container,
    tmp_path: Any,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    admin: asyncpg.Connection,
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the media folder should be")
    broken = await build_container(media_dir=not_a_folder)
    params = with_media(tenant, twilio_emulator, [("image/jpeg", JPEG)], body="Hi")
    message_id = await deliver(broken, tenant, params)
    with pytest.raises(Unavailable):
        await media_service.download_media(broken.deps, tenant.hotel_id, message_id)
    [row] = await media_rows(admin, message_id)
    assert (row["state"], row["claimed_until"]) == ("pending", None)  # free for the retry
    assert not twilio_emulator.media(sid_of(params["MediaUrl0"])).deleted
    assert await media_service.download_media(container.deps, tenant.hotel_id, message_id) == (
        "stored 1, refused 0, failed 0, retry 0"
    )


async def test_a_refused_photo_goes_to_staff_even_with_image_understanding(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
    admin: asyncpg.Connection,
) -> None:
    await change_assistant(
        container.deps, tenant.hotel_id, AssistantChanges(image_understanding=True)
    )
    params = with_media(tenant, twilio_emulator, [("image/jpeg", b"<html>not a photo</html>")])
    message_id = await deliver(container, tenant, params)
    await run_jobs(settings)
    assert [r["state"] for r in await media_rows(admin, message_id)] == ["refused"]
    reply = await reply_row(admin, message_id)
    assert reply["handoff_reason"] == "the guest sent a photo"
    assert not openai_emulator.requests  # nothing to show the model, nothing asked
