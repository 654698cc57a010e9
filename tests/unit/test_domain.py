"""Domain rules: addresses, delivery-status order, the 24-hour window, languages, prompts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from hotelchat.domain.addresses import parse_whatsapp_address, whatsapp_address
from hotelchat.domain.errors import InvalidInput
from hotelchat.domain.language import handoff_message, holding_message, pick_language
from hotelchat.domain.model import (
    Author,
    DeliveryStatus,
    HotelProfile,
    Passage,
    Turn,
    provider_status,
    status_advances,
    whatsapp_window_open,
)
from hotelchat.services.prompts import MAX_QUESTION_CHARS, build_prompt

S = DeliveryStatus


@pytest.mark.parametrize(
    "value", ["whatsapp:+15551234567", "whatsapp:+447700900123", "whatsapp:+34952000000"]
)
def test_whatsapp_address_round_trip(value: str) -> None:
    assert whatsapp_address(parse_whatsapp_address(value, field="From")) == value


@pytest.mark.parametrize(
    "value",
    ["+15551234567", "whatsapp:15551234567", "whatsapp:+0555", "whatsapp:+1555123456789012",
     "sms:+15551234567", "whatsapp:+1555 123", "", "whatsapp:+15551234567\n"],
)  # fmt: skip
def test_malformed_whatsapp_address_names_the_field(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^From"):
        parse_whatsapp_address(value, field="From")


def test_statuses_only_move_forwards() -> None:
    forward = [S.PENDING, S.SENDING, S.ACCEPTED, S.QUEUED, S.SENT, S.DELIVERED, S.READ]
    for earlier, later in itertools.pairwise(forward):
        assert status_advances(earlier, later)
        assert not status_advances(later, earlier)
    assert not status_advances(S.DELIVERED, S.DELIVERED)  # a repeat changes nothing
    assert status_advances(S.SENT, S.UNDELIVERED)  # Twilio reports undelivered after sent
    assert status_advances(S.DELIVERED, S.FAILED)
    assert not status_advances(S.READ, S.FAILED)  # read proves delivery


def test_provider_statuses_map_to_ours() -> None:
    assert provider_status("delivered") is S.DELIVERED
    assert provider_status("READ") is S.READ
    assert provider_status("canceled") is S.FAILED
    assert provider_status("receiving") is None
    assert provider_status(None) is None


def test_whatsapp_window_is_24_hours_from_the_last_inbound() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert whatsapp_window_open(now - timedelta(hours=23, minutes=59), now)
    assert not whatsapp_window_open(now - timedelta(hours=24), now)
    assert not whatsapp_window_open(None, now)


def test_platform_texts_follow_the_guest_language() -> None:
    assert pick_language(None, "xx", "es") == "es"
    assert pick_language("de", "es") == "de"
    assert pick_language(None) == "en"
    assert holding_message("es").startswith("Gracias")
    assert holding_message("tlh") == holding_message("en")
    assert "equipo" in handoff_message("es")


HOTEL = HotelProfile(
    id=1, slug="h", name="Hotel Sol", timezone="UTC", default_language="en",
    description="By the sea.", ai_model=None, ai_enabled=True,
)  # fmt: skip


def _words(text: str) -> int:
    return len(text.split())


def test_prompt_holds_facts_history_and_the_question_last() -> None:
    passages = [Passage(7, "Parking", "Parking costs EUR 18.", 0.4)]
    history = [Turn(Author.GUEST, "Hi"), Turn(Author.AI, "Hello! How can I help?")]
    prompt = build_prompt(HOTEL, passages, history, "Is there parking?", "en", count=_words)
    messages = prompt.messages
    assert messages[0].role == "system"
    assert "[1] Parking: Parking costs EUR 18." in messages[0].content
    assert "Hotel Sol" in messages[0].content
    assert [m.role for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[-1].content == "Is there parking?"
    assert prompt.turns_kept == 2


def test_prompt_cuts_a_huge_question() -> None:
    prompt = build_prompt(HOTEL, [], [], "x" * 100_000, None, count=len)
    assert len(prompt.messages[-1].content) == MAX_QUESTION_CHARS
    assert "(none match this question)" in prompt.messages[0].content
