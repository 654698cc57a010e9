"""The guest web chat over HTTP: the embeddable page, tokens that identify a returning guest,
messages answered like WhatsApp ones, and forged, cross-hotel, malformed and abusive input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client

from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import webchat
from tests.conftest import Tenant, run_jobs


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def start(client: Client, slug: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(f"/chat/{slug}/session", json={}, headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def say(
    client: Client, slug: str, token: str, text: str, client_id: str | None = None
) -> int:
    response = await client.post(
        f"/chat/{slug}/messages",
        json={"body": text, "client_id": client_id or str(uuid.uuid4())},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code


async def history(client: Client, slug: str, token: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/chat/{slug}/messages", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    messages: list[dict[str, Any]] = (await response.get_json())["messages"]
    return messages


async def test_the_page_is_embeddable_and_locked_down(client: Client, tenant: Tenant) -> None:
    response = await client.get(f"/chat/{tenant.slug}")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors *" in policy and "script-src 'self'" in policy
    assert "X-Frame-Options" not in response.headers
    assert (await client.get("/chat/no-such-hotel")).status_code == 404
    assert (await client.get("/static/embed.js")).status_code == 200


async def test_a_guest_chats_and_comes_back_to_their_history(
    client: Client, tenant: Tenant, settings: Settings, admin: asyncpg.Connection
) -> None:
    session = await start(client, tenant.slug)
    assert await say(client, tenant.slug, session["token"], "Is there parking?") == 201
    await run_jobs(settings)
    messages = await history(client, tenant.slug, session["token"])
    assert (messages[0]["author"], messages[0]["body"]) == ("guest", "Is there parking?")
    assert messages[1]["author"] == "ai"
    assert set(messages[1]) == {"id", "direction", "author", "body", "created_at", "media"}
    row = await admin.fetchrow(
        "SELECT c.channel, r.status FROM conversations c "
        "JOIN messages r ON r.conversation_id = c.id WHERE r.direction = 'outbound'"
    )
    assert row is not None and tuple(row) == ("web", "delivered")
    again = await start(client, tenant.slug, session["token"])
    assert again["conversation_id"] == session["conversation_id"]
    assert again["token"] == session["token"]


async def test_a_retried_message_is_stored_once(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    session = await start(client, tenant.slug)
    client_id = str(uuid.uuid4())
    assert await say(client, tenant.slug, session["token"], "Hello", client_id) == 201
    assert await say(client, tenant.slug, session["token"], "Hello", client_id) == 200
    assert await admin.fetchval("SELECT count(*) FROM messages") == 1


async def test_internal_notes_never_reach_the_guest(
    client: Client, tenant: Tenant, admin: asyncpg.Connection, container: Any
) -> None:
    session = await start(client, tenant.slug)
    assert await say(client, tenant.slug, session["token"], "Hi") == 201
    await admin.execute(
        """INSERT INTO messages (hotel_id, conversation_id, direction, author, body, status)
           VALUES ($1, $2, 'internal', 'agent', 'Guest seems upset', 'received')""",
        tenant.hotel_id,
        session["conversation_id"],
    )
    assert [m["body"] for m in await history(client, tenant.slug, session["token"])] == ["Hi"]


@pytest.mark.parametrize(
    "token",
    ["", "forged", "x" * 2000, "eyJoIjoxLCJnIjoiMTIzIn0.AAAA.BBBB"],
)
async def test_forged_tokens_are_refused(client: Client, tenant: Tenant, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.get(f"/chat/{tenant.slug}/messages", headers=headers)
    assert response.status_code == 401
    response = await client.post(
        f"/chat/{tenant.slug}/messages",
        json={"body": "hi", "client_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert response.status_code == 401


async def test_a_token_of_another_hotel_opens_nothing_there(
    client: Client, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    ours = await start(client, tenant.slug)
    assert await say(client, tenant.slug, ours["token"], "private question") == 201
    response = await client.get(
        f"/chat/{other_tenant.slug}/messages", headers={"Authorization": f"Bearer {ours['token']}"}
    )
    assert response.status_code == 401
    assert await say(client, other_tenant.slug, ours["token"], "hi") == 401
    # Starting at hotel B with hotel A's token gives a new, empty guest of hotel B.
    theirs = await start(client, other_tenant.slug, ours["token"])
    assert theirs["token"] != ours["token"]
    assert await history(client, other_tenant.slug, theirs["token"]) == []


async def test_a_token_signed_for_something_else_is_refused(
    client: Client, tenant: Tenant, container: Any
) -> None:
    other_purpose = container.deps.tokens.sign(
        "something.else", {"h": tenant.hotel_id, "g": str(uuid.uuid4())}
    )
    unknown_guest = container.deps.tokens.sign(
        webchat.TOKEN_PURPOSE, {"h": tenant.hotel_id, "g": str(uuid.uuid4())}
    )
    for token in (other_purpose, unknown_guest):
        response = await client.get(
            f"/chat/{tenant.slug}/messages", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [None, [], {"body": "hi"}, {"body": "", "client_id": str(uuid.uuid4())},
     {"body": "hi", "client_id": "nope-nope-nope-nope-nope-nope-nope-n"},
     {"body": "x" * 4097, "client_id": str(uuid.uuid4())}],
)  # fmt: skip
async def test_malformed_messages_are_400(
    client: Client, tenant: Tenant, admin: asyncpg.Connection, body: object
) -> None:
    session = await start(client, tenant.slug)
    response = await client.post(
        f"/chat/{tenant.slug}/messages",
        json=body,
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert response.status_code == 400
    assert await admin.fetchval("SELECT count(*) FROM messages") == 0


async def test_oversized_bodies_and_names(client: Client, tenant: Tenant) -> None:
    session = await start(client, tenant.slug)
    response = await client.post(
        f"/chat/{tenant.slug}/messages",
        json={"body": "x" * 100_000, "client_id": str(uuid.uuid4())},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert response.status_code == 413
    response = await client.post(f"/chat/{tenant.slug}/session", json={"name": "n" * 500})
    assert response.status_code == 400
    response = await client.post(f"/chat/{tenant.slug}/session", json=[1, 2])
    assert response.status_code == 400


async def test_a_flood_of_messages_is_throttled(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    session = await start(client, tenant.slug)
    statuses = [await say(client, tenant.slug, session["token"], f"spam {i}") for i in range(22)]
    assert statuses[:20] == [201] * 20
    assert statuses[20:] == [429, 429]
    assert await admin.fetchval("SELECT count(*) FROM messages") == 20
