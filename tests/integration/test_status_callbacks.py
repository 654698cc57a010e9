"""Twilio's delivery-status callbacks: statuses only move forwards; forged, malformed and
cross-tenant callbacks change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import replies
from tests.conftest import Tenant
from tests.helpers import GUEST, STATUS_PATH, new_sid, receive, signed


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def sent_reply(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> asyncpg.Record:
    message_id = await receive(container, tenant, "Is there parking?")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    row = await admin.fetchrow("SELECT * FROM messages WHERE in_reply_to = $1", message_id)
    assert row is not None
    return row


def callback(tenant: Tenant, sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": tenant.account_sid, "ApiVersion": "2010-04-01", "ChannelPrefix": "whatsapp",
        "From": f"whatsapp:{tenant.phone_number}", "To": f"whatsapp:{GUEST}",
        "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status, **extra,
    }  # fmt: skip


async def post(
    client: Client, signer: Tenant, params: dict[str, str], message_id: int | None
) -> int:
    path = STATUS_PATH + (f"?message_id={message_id}" if message_id is not None else "")
    response = await client.post(path, form=params, headers=signed(signer, params, path))
    return response.status_code


async def status_of(admin: asyncpg.Connection, message_id: int) -> str:
    return str(await admin.fetchval("SELECT status FROM messages WHERE id = $1", message_id))


async def test_ticks_advance_and_never_go_back(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    reply = await sent_reply(container, tenant, admin)
    sid = reply["provider_sid"]
    for status in ("sent", "delivered", "read"):
        assert await post(client, tenant, callback(tenant, sid, status), reply["id"]) == 204
        assert await status_of(admin, reply["id"]) == status
    for late in ("delivered", "sent", "queued", "read"):  # out of order and repeats
        assert await post(client, tenant, callback(tenant, sid, late), reply["id"]) == 204
        assert await status_of(admin, reply["id"]) == "read"
    row = await admin.fetchrow(
        "SELECT delivered_at, read_at FROM messages WHERE id = $1", reply["id"]
    )
    assert row is not None and row["delivered_at"] is not None and row["read_at"] is not None


async def test_a_callback_by_sid_alone_also_works(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    reply = await sent_reply(container, tenant, admin)
    assert (
        await post(client, tenant, callback(tenant, reply["provider_sid"], "delivered"), None)
        == 204
    )
    assert await status_of(admin, reply["id"]) == "delivered"


async def test_a_callback_before_the_sid_is_stored_finds_its_message(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    reply = await sent_reply(container, tenant, admin)
    await admin.execute(
        "UPDATE messages SET provider_sid = NULL, status = 'sending' WHERE id = $1", reply["id"]
    )
    sid = new_sid()
    assert await post(client, tenant, callback(tenant, sid, "sent"), reply["id"]) == 204
    row = await admin.fetchrow(
        "SELECT status, provider_sid FROM messages WHERE id = $1", reply["id"]
    )
    assert row is not None and (row["status"], row["provider_sid"]) == ("sent", sid)
    # The send job records the SID afterwards; the newer status stays.
    from hotelchat.domain.model import DeliveryStatus
    from hotelchat.services.ports import SentMessage

    await container.store.record_sent(
        tenant.hotel_id, reply["id"], SentMessage(sid, DeliveryStatus.QUEUED)
    )
    assert await status_of(admin, reply["id"]) == "sent"


async def test_a_failed_delivery_hands_the_conversation_to_staff(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    reply = await sent_reply(container, tenant, admin)
    params = callback(tenant, reply["provider_sid"], "failed", ErrorCode="63016")
    assert await post(client, tenant, params, reply["id"]) == 204
    row = await admin.fetchrow(
        """SELECT m.status, m.error_code, c.state FROM messages m
           JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1""",
        reply["id"],
    )
    assert row is not None and tuple(row) == ("failed", "twilio_63016", "needs_human")


async def test_forged_callbacks_change_nothing(
    client: Client, container: Container, tenant: Tenant, other_tenant: Tenant,
    admin: asyncpg.Connection,
) -> None:  # fmt: skip
    reply = await sent_reply(container, tenant, admin)
    params = callback(tenant, reply["provider_sid"], "read")
    path = f"{STATUS_PATH}?message_id={reply['id']}"
    assert (await client.post(path, form=params)).status_code == 403
    assert await post(client, other_tenant, params, reply["id"]) == 403  # B's key, A's number
    tampered = signed(tenant, params, path)
    response = await client.post(path.replace(str(reply["id"]), "1"), form=params, headers=tampered)
    assert response.status_code == 403  # the message id is part of what Twilio signed
    assert await status_of(admin, reply["id"]) == "queued"


async def test_another_hotel_cannot_touch_our_messages(
    client: Client, container: Container, tenant: Tenant, other_tenant: Tenant,
    admin: asyncpg.Connection,
) -> None:  # fmt: skip
    reply = await sent_reply(container, tenant, admin)
    # Correctly signed by hotel B, from hotel B's number, naming hotel A's message and SID.
    params = callback(other_tenant, reply["provider_sid"], "read")
    assert await post(client, other_tenant, params, reply["id"]) == 204
    assert await post(client, other_tenant, params, None) == 204
    assert await status_of(admin, reply["id"]) == "queued"


@pytest.mark.parametrize(
    ("change", "query", "expected"),
    [
        ({"MessageSid": "SM123"}, "", 400),
        ({"ErrorCode": "'; DROP TABLE"}, "", 400),
        ({"MessageStatus": "x" * 40}, "", 400),
        ({"From": "+15550000001"}, "", 400),
        ({"From": "whatsapp:+15559999999"}, "", 404),
        ({"MessageStatus": "teleported"}, "", 204),
        ({}, "?message_id=abc", 400),
        ({}, "?message_id=" + "9" * 30, 400),
    ],
)
async def test_malformed_callbacks_are_refused(
    client: Client, container: Container, tenant: Tenant, admin: asyncpg.Connection,
    change: dict[str, str], query: str, expected: int,
) -> None:  # fmt: skip
    reply = await sent_reply(container, tenant, admin)
    params = callback(tenant, reply["provider_sid"], "read") | change
    path = STATUS_PATH + query
    response = await client.post(path, form=params, headers=signed(tenant, params, path))
    assert response.status_code == expected
    assert await status_of(admin, reply["id"]) == "queued"


async def test_an_oversized_callback_is_413(client: Client, tenant: Tenant) -> None:
    params = callback(tenant, new_sid(), "read", Padding="x" * 100_000)
    assert await post(client, tenant, params, None) == 413
