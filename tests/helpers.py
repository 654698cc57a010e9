"""Helpers shared by tests: Twilio-shaped webhook requests signed like Twilio signs them, a
message received through the service, a logged-in dashboard client, the `hotelchat` command."""

from __future__ import annotations

import os
import re
import secrets
import struct
import subprocess
import sys
import zlib
from typing import Any

import aiohttp
import asyncpg
from quart.typing import TestClientProtocol as Client

from hotelchat.adapters.twilio import sign
from hotelchat.bootstrap import Container
from hotelchat.entrypoints.simulate import inbound_params
from hotelchat.services import inbound as inbound_service
from tests.conftest import AGENT_PASSWORD, PUBLIC_URL, Backing, Tenant, create_agent
from tests.live import Live

INBOUND_PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = "/webhooks/twilio/status"
GUEST = "+15551234567"


def inbound(
    tenant: Tenant, body: str = "Is there parking?", *, guest: str = GUEST
) -> dict[str, str]:
    """Twilio's inbound WhatsApp webhook parameters for a text from `guest` to `tenant`."""
    return inbound_params(
        account_sid=tenant.account_sid,
        to_number=tenant.phone_number,
        from_number=guest,
        profile_name="Ana García",
        body=body,
    )


def signature(tenant: Tenant, params: dict[str, str], path: str = INBOUND_PATH) -> str:
    return sign(tenant.auth_token, PUBLIC_URL + path, params)


def signed(tenant: Tenant, params: dict[str, str], path: str = INBOUND_PATH) -> dict[str, str]:
    """Headers of a request Twilio signed for `tenant`."""
    return {"X-Twilio-Signature": signature(tenant, params, path)}


async def post_webhook(
    base_url: str,
    tenant: Tenant,
    text: str,
    *,
    guest: str = GUEST,
    signed_for: str | None = None,
) -> str:
    """POST Twilio's inbound WhatsApp webhook for `text` from `guest` to the server at
    `base_url`, signed as Twilio signs it for the public URL `signed_for` (default `base_url`).
    Asserts the 200 with empty TwiML; returns the MessageSid."""
    params = inbound(tenant, text, guest=guest)
    headers = {
        "X-Twilio-Signature": sign(
            tenant.auth_token, (signed_for or base_url) + INBOUND_PATH, params
        )
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(base_url + INBOUND_PATH, data=params, headers=headers) as response,
    ):
        answer = await response.text()
        assert response.status == 200, answer
        assert answer.startswith("<?xml"), answer
    return params["MessageSid"]


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


async def receive(container: Container, tenant: Tenant, text: str, guest: str = GUEST) -> int:
    """Deliver one signed inbound message through the service; returns its message id."""
    params = inbound(tenant, text, guest=guest)
    record = await inbound_service.receive_whatsapp(
        container.deps, params, url=PUBLIC_URL + INBOUND_PATH, signature=signature(tenant, params)
    )
    assert record.message_id is not None
    return record.message_id


async def reply_row(admin: asyncpg.Connection, message_id: int) -> asyncpg.Record:
    row = await admin.fetchrow(
        """SELECT r.*, c.state AS conversation_state, c.handoff_reason
           FROM messages r JOIN conversations c ON c.id = r.conversation_id
           WHERE r.in_reply_to = $1""",
        message_id,
    )
    assert row is not None, "no reply stored"
    return row


async def csrf_of(client: Client) -> str:
    page = await client.get("/dashboard")
    found = re.search(r'name="csrf-token" content="([^"]+)"', await page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


async def login(client: Client, email: str, password: str = AGENT_PASSWORD) -> int:
    """Log in through the form as a browser does; returns the POST's status."""
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
    assert token is not None
    response = await client.post(
        "/login", form={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    return response.status_code


async def post(
    client: Client, path: str, csrf: str | None, body: object = None
) -> tuple[int, dict[str, Any]]:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    response = await client.post(path, json=body, headers=headers)
    return response.status_code, await response.get_json()


async def as_role(client: Client, admin: asyncpg.Connection, tenant: Tenant, role: str) -> str:
    await create_agent(admin, f"{role}@a.test", [tenant.slug], role=role)
    assert await login(client, f"{role}@a.test") == 303
    return await csrf_of(client)


def hotelchat(backing: Backing, secret: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `hotelchat ARGS` as an operator would, against the test database."""
    env = {
        **os.environ,
        "DATABASE_URL": backing.app_dsn,
        "REDIS_URL": backing.redis_url,
        "PUBLIC_BASE_URL": "https://chat.example.test/",
    }
    if secret is not None:
        env["SECRET_KEY"] = secret
    return subprocess.run(
        [sys.executable, "-m", "hotelchat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def as_browser(http: aiohttp.ClientSession, live: Live, cookie: str) -> dict[str, str]:
    """The headers a logged-in dashboard sends: its session cookie and the page's CSRF token."""
    headers = {"Cookie": f"hc_session={cookie}"}
    async with http.get(live.url + "/dashboard", headers=headers) as page:
        found = re.search(r'name="csrf-token" content="([^"]+)"', await page.text())
        assert found is not None
    return {**headers, "X-CSRF-Token": found.group(1)}


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG (solid teal) that a browser decodes, made here: no test file to ship."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x00\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def media_webhook(
    tenant: Tenant, twilio: Any, files: list[tuple[str, bytes]], body: str = ""
) -> dict[str, str]:
    """Twilio's inbound webhook for a message with media, which the Twilio emulator `twilio`
    holds for the tenant's account (served with its credentials at `MediaUrl{N}`)."""
    params = inbound(tenant, body)
    sid = "MM" + secrets.token_hex(16)
    params["MessageSid"] = params["SmsMessageSid"] = params["SmsSid"] = sid
    params["NumMedia"] = str(len(files))
    for n, (content_type, data) in enumerate(files):
        params[f"MediaUrl{n}"] = twilio.add_media(
            tenant.account_sid, tenant.auth_token, sid, content_type, data
        )
        params[f"MediaContentType{n}"] = content_type
    return params


async def post_params(base_url: str, tenant: Tenant, params: dict[str, str]) -> None:
    """POST webhook `params` to the server at `base_url`, signed for it; asserts the 200."""
    headers = {"X-Twilio-Signature": sign(tenant.auth_token, base_url + INBOUND_PATH, params)}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(base_url + INBOUND_PATH, data=params, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
