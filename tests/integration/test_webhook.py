"""The inbound WhatsApp webhook, as Twilio calls it: signed form posts, replays, and every kind of
bad input. Each refusal must store nothing and queue nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr
from quart import Quart
from quart.typing import TestClientProtocol as Client

from hotelchat.adapters.queue import create_redis
from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app
from tests.conftest import CIPHER, Backing, Tenant
from tests.helpers import GUEST, INBOUND_PATH, inbound, new_sid, signature, signed
from tests.live import TIMEOUT, live_server

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    app: Quart = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def queued_jobs(backing: Backing) -> list[str]:
    redis = create_redis(backing.redis_url, timeout=5)
    try:
        return [job.decode() for job in await redis.zrange("arq:queue", 0, -1)]
    finally:
        await redis.aclose()


async def stored(admin: asyncpg.Connection) -> dict[str, int]:
    return {
        table: await admin.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("messages", "guests", "conversations")
    }


NOTHING = {"messages": 0, "guests": 0, "conversations": 0}


async def test_a_signed_message_is_stored_and_its_reply_queued(
    client: Client, tenant: Tenant, admin: asyncpg.Connection, backing: Backing
) -> None:
    params = inbound(tenant, "Is there parking?")
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 200
    assert await response.get_data(as_text=True) == EMPTY_TWIML
    assert response.content_type.startswith("text/xml")
    row = await admin.fetchrow(
        """SELECT m.id, m.body, m.direction, m.author, m.status, m.reply_state, m.hotel_id,
                  g.wa_id, g.phone_number, g.display_name, c.channel, c.state
           FROM messages m JOIN conversations c ON c.id = m.conversation_id
           JOIN guests g ON g.id = c.guest_id"""
    )
    assert row is not None
    assert dict(row) | {"id": 0} == {
        "id": 0, "body": "Is there parking?", "direction": "inbound", "author": "guest",
        "status": "received", "reply_state": "pending", "hotel_id": tenant.hotel_id,
        "wa_id": GUEST[1:], "phone_number": GUEST, "display_name": "Ana García",
        "channel": "whatsapp", "state": "ai",
    }  # fmt: skip
    assert await queued_jobs(backing) == [f"reply:{row['id']}"]


async def test_a_replay_stores_nothing_new_queues_nothing_new_and_gets_200(
    client: Client, tenant: Tenant, admin: asyncpg.Connection, backing: Backing
) -> None:
    params = inbound(tenant)
    for _ in range(3):
        response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
        assert response.status_code == 200
    assert await stored(admin) == {"messages": 1, "guests": 1, "conversations": 1}
    assert len(await queued_jobs(backing)) == 1
    # Once the reply is done, a late Twilio retry queues nothing at all.
    await admin.execute("UPDATE messages SET reply_state = 'answered'")
    redis = create_redis(backing.redis_url, timeout=5)
    await redis.flushdb()
    await redis.aclose()
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 200
    assert await queued_jobs(backing) == []


async def test_a_second_message_joins_the_same_conversation(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    for text in ("Hi", "What time is breakfast?"):
        params = inbound(tenant, text)
        response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
        assert response.status_code == 200
    assert await stored(admin) == {"messages": 2, "guests": 1, "conversations": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": ""},
        {"X-Twilio-Signature": "not base64 at all!"},
        {"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
    ],
    ids=["missing", "empty", "garbage", "wrong"],
)
async def test_a_missing_or_bad_signature_is_refused(
    client: Client,
    tenant: Tenant,
    admin: asyncpg.Connection,
    backing: Backing,
    headers: dict[str, str],
) -> None:
    response = await client.post(INBOUND_PATH, form=inbound(tenant), headers=headers)
    assert response.status_code == 403
    assert await stored(admin) == NOTHING
    assert await queued_jobs(backing) == []


async def test_a_forged_request_is_refused(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    params = inbound(tenant, "Hello")
    headers = signed(tenant, params)
    tampered = params | {"Body": "Please refund my booking"}
    assert (await client.post(INBOUND_PATH, form=tampered, headers=headers)).status_code == 403
    other_key = {"X-Twilio-Signature": signature(tenant, params).swapcase()}
    assert (await client.post(INBOUND_PATH, form=params, headers=other_key)).status_code == 403
    assert await stored(admin) == NOTHING


async def test_host_and_forwarded_headers_do_not_change_the_outcome(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    from hotelchat.adapters.twilio import sign

    spoof = {"Host": "evil.example", "X-Forwarded-Host": "evil.example",
             "X-Forwarded-Proto": "http", "X-Forwarded-Port": "8080"}  # fmt: skip
    params = inbound(tenant)
    # Signed for the attacker's host: refused, whatever the headers claim.
    evil = sign(tenant.auth_token, "http://evil.example:8080" + INBOUND_PATH, params)
    response = await client.post(
        INBOUND_PATH, form=params, headers=spoof | {"X-Twilio-Signature": evil}
    )
    assert response.status_code == 403
    # Signed for our public URL: accepted, whatever the headers claim.
    response = await client.post(INBOUND_PATH, form=params, headers=spoof | signed(tenant, params))
    assert response.status_code == 200
    assert (await stored(admin))["messages"] == 1


async def test_an_unknown_number_is_404_and_stores_nothing(
    client: Client, tenant: Tenant, admin: asyncpg.Connection, backing: Backing
) -> None:
    params = inbound(tenant) | {"To": "whatsapp:+15559999999"}
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"
    assert await stored(admin) == NOTHING
    assert await queued_jobs(backing) == []


async def test_another_hotels_account_is_refused(
    client: Client, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    # Hotel B's account and token, aimed at hotel A's number.
    params = inbound(tenant) | {"AccountSid": other_tenant.account_sid}
    for who in (other_tenant, tenant):
        response = await client.post(INBOUND_PATH, form=params, headers=signed(who, params))
        assert response.status_code == 403
    assert await stored(admin) == NOTHING


async def test_an_oversized_body_is_413(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    params = inbound(tenant, "x" * 70_000)
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 413
    assert await stored(admin) == NOTHING


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"MessageSid": "SMnot-a-sid"}, "MessageSid"),
        ({"MessageSid": ""}, "MessageSid"),
        ({"From": "+15551234567"}, "From"),
        ({"From": "whatsapp:+1"}, "From"),
        ({"WaId": "abc"}, "WaId"),
        ({"NumMedia": "many"}, "NumMedia"),
        ({"NumMedia": "99"}, "NumMedia"),
        ({"Body": "x" * 4097}, "Body"),
        ({"Body": "   ", "NumMedia": "0"}, "Body"),
        ({"ProfileName": "n" * 300}, "ProfileName"),
        ({"AccountSid": "ACxyz"}, None),  # refused as not the number's account
    ],
)
async def test_malformed_fields_are_400_naming_the_field(
    client: Client,
    tenant: Tenant,
    admin: asyncpg.Connection,
    change: dict[str, str],
    field: str | None,
) -> None:
    params = inbound(tenant) | change
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    if field is None:
        assert response.status_code in (400, 403)
    else:
        assert response.status_code == 400
        assert field in (await response.get_json())["error"]["message"]
    assert await stored(admin) == NOTHING


async def test_missing_fields_are_400(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    for missing in ("MessageSid", "From", "WaId", "AccountSid"):
        params = {k: v for k, v in inbound(tenant).items() if k != missing}
        response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
        assert response.status_code == 400, missing
    params = {k: v for k, v in inbound(tenant).items() if k != "To"}
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 400
    assert await stored(admin) == NOTHING


async def test_not_a_form_and_repeated_parameters_are_400(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    params = inbound(tenant)
    response = await client.post(INBOUND_PATH, json=params, headers=signed(tenant, params))
    assert response.status_code == 400
    body = "&".join(f"{k}={v}" for k, v in params.items()) + "&Body=second"
    response = await client.post(
        INBOUND_PATH,
        data=body.encode(),
        headers=signed(tenant, params) | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 403)
    assert await stored(admin) == NOTHING


async def test_parameters_twilio_adds_later_are_accepted(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    params = inbound(tenant) | {"ChannelMetadata": '{"type":"whatsapp"}', "SomethingNew": "1"}
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 200
    assert (await stored(admin))["messages"] == 1


async def test_a_media_message_without_text_is_accepted(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    params = inbound(tenant, "") | {
        "NumMedia": "1",
        "MediaContentType0": "image/jpeg",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME",
        "MessageSid": "MM" + new_sid()[2:],
    }
    response = await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    assert response.status_code == 200
    assert await admin.fetchval("SELECT num_media FROM messages") == 1


async def test_with_the_queue_down_the_message_is_kept_and_twilio_gets_200(
    backing: Backing,
    settings: Settings,
    tenant: Tenant,
    admin: asyncpg.Connection,
    container: object,
) -> None:
    from hotelchat.adapters.embedded import free_port
    from hotelchat.services.maintenance import requeue_stalled

    dead = settings.model_copy(
        update={"redis_url": SecretStr(f"redis://127.0.0.1:{free_port()}/0")}
    )
    app = create_app(dead)
    async with app.test_app() as test_app:
        params = inbound(tenant)
        response = await test_app.test_client().post(
            INBOUND_PATH, form=params, headers=signed(tenant, params)
        )
    assert response.status_code == 200
    assert (await stored(admin))["messages"] == 1
    assert await queued_jobs(backing) == []
    # The sweeper queues it once the queue is back (and the message is old enough).
    await admin.execute("UPDATE messages SET created_at = now() - interval '1 minute'")
    assert await requeue_stalled(container.deps) == 1  # type: ignore[attr-defined]
    message_id = await admin.fetchval("SELECT id FROM messages")
    assert await queued_jobs(backing) == [f"reply:{message_id}"]


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert (await ready.get_json())["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_a_rotated_auth_token_takes_effect_at_once(
    client: Client, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    import dataclasses

    params = inbound(tenant, "first")
    assert (
        await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    ).status_code == 200
    # The route (with the old token) is now remembered; the hotel rotates its token.
    rotated = dataclasses.replace(tenant, auth_token="f" * 32)
    await admin.execute(
        "UPDATE whatsapp_senders SET auth_token_ciphertext = $1",
        CIPHER.encrypt(rotated.auth_token),
    )
    params = inbound(tenant, "second")
    assert (
        await client.post(INBOUND_PATH, form=params, headers=signed(rotated, params))
    ).status_code == 200
    params = inbound(tenant, "third")
    assert (
        await client.post(INBOUND_PATH, form=params, headers=signed(tenant, params))
    ).status_code == 403
    assert (await stored(admin))["messages"] == 2


async def test_readiness_fails_when_redis_is_down(settings: Settings) -> None:
    from hotelchat.adapters.embedded import free_port

    dead = settings.model_copy(
        update={"redis_url": SecretStr(f"redis://127.0.0.1:{free_port()}/0")}
    )
    app = create_app(dead)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert (await ready.get_json())["checks"] == {"postgres": "ok", "redis": "unavailable"}


async def test_past_its_in_flight_limit_a_process_sheds_webhooks_with_503_and_loses_none(
    settings: Settings, tenant: Tenant, admin: asyncpg.Connection, backing: Backing
) -> None:
    """80 signed webhooks at once against a real server allowed 2 at a time: the excess gets 503
    with Retry-After (never a 500 or a timeout), every 200 is stored exactly once, nothing shed
    is stored, and the shed ones, sent again as Twilio would, are then stored once each."""
    limited = settings.model_copy(update={"webhook_max_in_flight": 2})
    bodies = [inbound(tenant, f"Question {n}") for n in range(80)]
    async with live_server(limited) as live, aiohttp.ClientSession(timeout=TIMEOUT) as http:

        async def post(params: dict[str, str]) -> tuple[int, str | None]:
            async with http.post(
                live.url + INBOUND_PATH, data=params, headers=signed(tenant, params)
            ) as response:
                await response.read()
                return response.status, response.headers.get("Retry-After")

        answers = await asyncio.gather(*(post(p) for p in bodies))
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses and 503 in statuses, statuses
        print(f"80 at once, 2 allowed: {statuses.count(200)} accepted, {statuses.count(503)} shed")
        assert all(retry == "5" for status, retry in answers if status == 503)
        accepted = {p["MessageSid"] for p, (s, _) in zip(bodies, answers, strict=True) if s == 200}
        stored = await admin.fetch("SELECT provider_sid, count(*) AS n FROM messages GROUP BY 1")
        assert {r["provider_sid"]: r["n"] for r in stored} == dict.fromkeys(accepted, 1)
        assert len(await queued_jobs(backing)) == len(accepted)
        # Twilio's retries (with `#rp=5xx` on the webhook URL), one at a time: all accepted.
        for params, (status, _) in zip(bodies, answers, strict=True):
            if status == 503:
                assert (await post(params))[0] == 200
    rows = await admin.fetch("SELECT provider_sid, count(*) AS n FROM messages GROUP BY 1")
    assert {r["provider_sid"]: r["n"] for r in rows} == {p["MessageSid"]: 1 for p in bodies}
