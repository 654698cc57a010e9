"""Helpers shared by tests: Twilio-shaped webhook requests, signed like Twilio signs them."""

from __future__ import annotations

import secrets

from hotelchat.adapters.twilio import sign
from hotelchat.entrypoints.simulate import inbound_params
from tests.conftest import PUBLIC_URL, Tenant

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


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)
