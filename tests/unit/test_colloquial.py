"""Query normalisation: colloquial and transliterated hotel words get their plain English word
appended; the question itself is kept, and questions without such words are left alone."""

from __future__ import annotations

import pytest

from hotelchat.domain.colloquial import TERMS, expand, fold


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("bis wann gibts fruehstueck?", "bis wann gibts fruehstueck? (breakfast)"),
        ("le petit-déj c'est où", "le petit-déj c'est où (breakfast)"),
        ("Pequeno Almoço até q horas?", "Pequeno Almoço até q horas? (breakfast)"),
        ("tem cofre no quarto? e academia?", "tem cofre no quarto? e academia? (safe, gym)"),
        ("whats the wifi pw", "whats the wifi pw (wifi password)"),
    ],
)
def test_colloquial_words_get_their_plain_word(question: str, expected: str) -> None:
    assert expand(question) == expected


@pytest.mark.parametrize(
    "question", ["where can i leave my car?", "", "   ", "pwned", "academias", "brekkiest"]
)
def test_questions_without_them_are_unchanged(question: str) -> None:
    assert expand(question) == question


def test_the_longest_form_wins_and_each_plain_word_comes_once() -> None:
    assert expand("wifi pw? pw!") == "wifi pw? pw! (wifi password, password)"
    assert expand("the wifi pw") == "the wifi pw (wifi password)"
    assert expand("brekkie brekky") == "brekkie brekky (breakfast)"


def test_the_forms_are_folded_and_unique() -> None:
    forms = [form for form, _ in TERMS]
    assert len(forms) == len(set(forms))
    assert all(fold(form) == form for form in forms)
