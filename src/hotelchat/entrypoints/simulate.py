"""`hotelchat simulate`: play a guest against a running HotelChat.

It posts an inbound-message webhook exactly as Twilio would (form-encoded, every parameter Twilio
sends for a WhatsApp text, signed with the hotel's auth token over the public URL), then waits for
the reply: from the Twilio emulator's sent messages when one is in use (what the guest's phone
would show), else from the database once the reply has a Twilio MessageSid.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import aiohttp

from hotelchat.adapters.credentials import TokenCipher
from hotelchat.adapters.postgres.database import Database, PoolConfig, create_pool
from hotelchat.adapters.postgres.store import PostgresStore
from hotelchat.adapters.twilio import sign
from hotelchat.config import ConfigError, Settings
from hotelchat.domain.addresses import is_e164, whatsapp_address
from hotelchat.domain.errors import Conflict, InvalidInput, NotFound, Unavailable
from hotelchat.domain.model import DeliveryStatus

POLL_SECONDS = 0.25
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


def _runtime(settings: Settings) -> dict[str, str]:
    """URLs of the running system: the environment first, then `hotelchat dev`'s dev.json."""
    found: dict[str, str] = {}
    path = settings.state_dir.resolve() / "dev.json"
    if path.exists():
        found.update({k: str(v) for k, v in json.loads(path.read_text()).items()})
    if settings.database_url is not None:
        found["database_url"] = settings.database_url.get_secret_value()
    if "public_base_url" in settings.model_fields_set or "public_url" not in found:
        found["public_url"] = settings.public_url
    if settings.twilio_api_base_url is not None:
        found["twilio_api_base_url"] = str(settings.twilio_api_base_url).rstrip("/")
    if "database_url" not in found:
        raise ConfigError("DATABASE_URL is not set and no `hotelchat dev` is running here")
    if settings.encryption_keys is not None:
        found["encryption_keys"] = settings.encryption_keys.get_secret_value()
    elif (keys := settings.state_dir.resolve() / "encryption_keys").exists():
        found["encryption_keys"] = keys.read_text().strip()  # made by `hotelchat dev`
    else:
        raise ConfigError("ENCRYPTION_KEYS is not set: it decrypts the hotel's auth token")
    return found


def inbound_params(
    *, account_sid: str, to_number: str, from_number: str, profile_name: str, body: str
) -> dict[str, str]:
    """The parameters of Twilio's inbound WhatsApp webhook for a text message."""
    sid = "SM" + secrets.token_hex(16)
    return {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": profile_name,
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": from_number.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": whatsapp_address(to_number),
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": whatsapp_address(from_number),
        "ApiVersion": "2010-04-01",
    }


async def simulate_guest(
    settings: Settings,
    *,
    hotel_slug: str,
    from_number: str,
    profile_name: str,
    text: str,
    timeout: float,
) -> str:
    """Send `text` as guest `from_number` to hotel `hotel_slug` and return the reply's text.

    Raises `InvalidInput`, `NotFound` (no such hotel, or it has no WhatsApp number), `Conflict`
    (the conversation is with staff, so the assistant stays silent) or `Unavailable` (the server
    refused the webhook, or no reply came within `timeout` seconds).
    """
    if not is_e164(from_number):
        raise InvalidInput("--from must be an E.164 number such as +15551234567")
    runtime = _runtime(settings)
    pool = await create_pool(PoolConfig(dsn=runtime["database_url"], min_size=0, max_size=2))
    cipher = TokenCipher.from_setting(runtime["encryption_keys"])
    store = PostgresStore(Database(pool, acquire_timeout=5), cipher)
    try:
        hotel_id = await store.route_hotel(hotel_slug, for_guests=False)
        if hotel_id is None:
            raise NotFound(f"no hotel {hotel_slug!r}")
        senders = await store.whatsapp_senders(hotel_id)
        if not senders:
            raise NotFound(f"hotel {hotel_slug!r} has no WhatsApp number")
        sender = senders[0]
        params = inbound_params(
            account_sid=sender.account_sid,
            to_number=sender.phone_number,
            from_number=from_number,
            profile_name=profile_name,
            body=text,
        )
        url = runtime["public_url"].rstrip("/") + "/webhooks/twilio/whatsapp"
        emulator = runtime.get("twilio_api_base_url") or ""
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            before = await _emulator_count(http, emulator, from_number)
            headers = {"X-Twilio-Signature": sign(sender.auth_token, url, params)}
            async with http.post(url, data=params, headers=headers) as response:
                if response.status != 200:
                    detail = await response.text()
                    raise Unavailable(f"the webhook answered {response.status}: {detail[:200]}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if before is not None:
                    reply = await _emulator_reply(http, emulator, from_number, before)
                else:
                    found = await store.automated_reply(hotel_id, params["MessageSid"])
                    reply = found[0] if found and found[1] is not DeliveryStatus.PENDING else None
                if reply is not None:
                    return reply
                progress = await store.inbound_progress(hotel_id, params["MessageSid"])
                if progress is not None and progress[0] == "skipped":
                    raise Conflict(
                        "no automated reply: this guest's conversation is with the hotel's "
                        f"staff ({progress[1]}); an agent answers from the dashboard"
                    )
                await asyncio.sleep(POLL_SECONDS)
        raise Unavailable(f"no reply within {timeout:.0f} s; is the worker running?")
    finally:
        await pool.close()


async def _emulator_count(http: aiohttp.ClientSession, base: str, number: str) -> int | None:
    """How many messages the Twilio emulator sent to `number`; None without an emulator."""
    if not base:
        return None
    try:
        async with http.get(
            f"{base}/_emulator/messages", params={"to": whatsapp_address(number)}
        ) as r:
            return len(await r.json()) if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _emulator_reply(
    http: aiohttp.ClientSession, base: str, number: str, before: int
) -> str | None:
    async with http.get(f"{base}/_emulator/messages", params={"to": whatsapp_address(number)}) as r:
        messages = await r.json()
    if len(messages) > before:
        body: str = messages[before]["body"]
        return body
    return None
