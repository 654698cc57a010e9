"""WhatsApp addresses as Twilio writes them: `whatsapp:` followed by an E.164 number.

https://www.twilio.com/docs/whatsapp/api#using-phone-numbers-with-whatsapp
"""

from __future__ import annotations

import re

from hotelchat.domain.errors import InvalidInput

WHATSAPP_PREFIX = "whatsapp:"
# E.164: a plus, a non-zero country digit, at most 15 digits in all.
# https://www.itu.int/rec/T-REC-E.164
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(number: str) -> bool:
    """True when `number` is an E.164 phone number such as `+15551234567`."""
    return _E164.fullmatch(number) is not None


def parse_whatsapp_address(value: str, *, field: str) -> str:
    """Return the E.164 number of a `whatsapp:+15551234567` address.

    Raises `InvalidInput` naming `field` when the prefix is missing or the number is not E.164.
    """
    if not value.startswith(WHATSAPP_PREFIX):
        raise InvalidInput(f"{field} must be a whatsapp: address")
    number = value[len(WHATSAPP_PREFIX) :]
    if not is_e164(number):
        raise InvalidInput(f"{field} must be whatsapp: followed by an E.164 number")
    return number


def whatsapp_address(number: str) -> str:
    """The Twilio address for an E.164 number: `+15551234567` -> `whatsapp:+15551234567`."""
    return f"{WHATSAPP_PREFIX}{number}"
