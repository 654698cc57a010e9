"""Long replies split into Twilio-sized parts: each part within the limit, nothing lost or
reordered, cut at paragraph, then sentence, boundaries."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotelchat.domain.splitting import split_message

WORDS = st.sampled_from(
    ["the", "pool", "opens", "at", "nine", "Mr.", "Smith", "a.m.", "breakfast", "ñandú",
     "Zimmer", "garage", "x" * 40, "y" * 1700, "☕", "Grüße"]
)  # fmt: skip
SEPARATORS = st.sampled_from([" ", " ", " ", ". ", "! ", "? ", "\n", "\n\n", "\n \n", "  ", "\t"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.tuples(WORDS, SEPARATORS), min_size=0, max_size=900))
    return "".join(word + sep for word, sep in pieces)


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@settings(max_examples=150, deadline=None)
@given(texts(), st.sampled_from([1600, 300, 50]), st.sampled_from(["en", "es", "pt", "de"]))
def test_parts_fit_and_join_back_to_the_original_in_order(
    text: str, limit: int, language: str
) -> None:
    parts = split_message(text, limit=limit, language=language)
    assert all(0 < len(part) <= limit for part in parts)
    assert all(part == part.strip() for part in parts)
    # Nothing lost, nothing added, nothing reordered (whitespace at the cuts aside).
    assert squeeze("".join(parts)) == squeeze(text)
    # Each part is a slice of the original, and they come in the original's order.
    position = 0
    stripped = text.strip()
    for part in parts:
        found = stripped.find(part, position)
        assert found >= position
        assert stripped[position:found].strip() == ""
        position = found + len(part)
    if len(text.strip()) <= limit:
        assert parts == ([text.strip()] if text.strip() else [])


def test_a_reply_within_the_limit_is_one_part() -> None:
    assert split_message("  Parking is in the garage.  ") == ["Parking is in the garage."]
    assert split_message("   ") == []


def test_paragraph_breaks_come_before_sentence_ends() -> None:
    first = "Breakfast is served in the lobby. " * 30  # ~1,000 characters
    second = "The spa opens at nine. " * 30
    parts = split_message(first.strip() + "\n\n" + second.strip())
    assert parts == [first.strip(), second.strip()]


def test_sentences_are_kept_whole_and_abbreviations_are_not_sentence_ends() -> None:
    sentence = "Mr. Smith will meet you at 9 a.m. in the lobby of the hotel. "
    text = sentence * 60  # 3,660 characters, no paragraph breaks
    parts = split_message(text)
    assert len(parts) == 3
    for part in parts:
        assert len(part) <= 1600
        assert part.startswith("Mr. Smith") and part.endswith("of the hotel.")


def test_a_3500_character_reply_becomes_three_ordered_parts() -> None:
    paragraphs = [f"Paragraph {n}. " + "Our concierge can book it for you. " * 33 for n in range(3)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert 3400 < len(text) < 3600
    parts = split_message(text)
    assert [p.split(".")[0] for p in parts] == ["Paragraph 0", "Paragraph 1", "Paragraph 2"]


def test_a_word_longer_than_the_limit_is_cut_inside() -> None:
    assert split_message("a" * 3500) == ["a" * 1600, "a" * 1600, "a" * 300]


def test_a_limit_under_one_character_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_message("hello", limit=0)
