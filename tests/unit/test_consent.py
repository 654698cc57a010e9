"""Opt-out and opt-in keywords: whole-message matches, accents and punctuation ignored, per
language, configurable, and refused when contradictory."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hotelchat.config import Settings
from hotelchat.domain.consent import (
    DEFAULT_KEYWORDS,
    DEFAULT_OPT_IN,
    DEFAULT_OPT_OUT,
    OPTED_IN_CONFIRMATION,
    OPTED_OUT_CONFIRMATION,
    ConsentAction,
    KeywordTable,
    confirmation,
)


@pytest.mark.parametrize(
    ("body", "action", "keyword"),
    [("STOP", "opt_out", "STOP"), (" stop! ", "opt_out", "STOP"), ("Arrêt", "opt_out", "ARRET"),
     ("opt-out", "opt_out", "OPT OUT"), ("Dar  de baja.", "opt_out", "DAR DE BAJA"),
     ("START", "opt_in", "START"), ("anmelden", "opt_in", "ANMELDEN")],
)  # fmt: skip
def test_keywords_match_the_whole_message(body: str, action: str, keyword: str) -> None:
    match = DEFAULT_KEYWORDS.match(body)
    assert match is not None and (match.action.value, match.keyword) == (action, keyword)


@pytest.mark.parametrize("body", ["stop it", "please STOP", "", "   ", "STOP" * 40, "cancel"])
def test_anything_else_is_no_keyword(body: str) -> None:
    assert DEFAULT_KEYWORDS.match(body) is None


def test_every_default_language_has_both_lists_and_both_confirmations() -> None:
    for language in ("en", "es", "pt", "fr", "de", "it", "nl"):
        assert DEFAULT_OPT_OUT[language] and DEFAULT_OPT_IN[language]
        assert OPTED_OUT_CONFIRMATION[language] and OPTED_IN_CONFIRMATION[language]
    assert confirmation(ConsentAction.OPT_OUT, "ja") == OPTED_OUT_CONFIRMATION["en"]


def test_a_keyword_shared_by_two_languages_prefers_the_guests() -> None:
    match = DEFAULT_KEYWORDS.match("parar")
    assert match is not None and set(match.languages) == {"es", "pt"}
    assert match.language(["pt"]) == "pt" and match.language([None]) == "es"


def test_configured_lists_replace_a_languages_defaults_only() -> None:
    table = KeywordTable({"es": ["Basta ya"]})
    assert table.match("basta ya") is not None
    assert table.match("BAJA") is None
    assert table.match("STOP") is not None


@pytest.mark.parametrize(
    ("opt_out", "opt_in"),
    [({"es": ["START"]}, {}), ({"es": [""]}, {}), ({"es": ["x" * 65]}, {}), ({}, {"de": ["STOP"]})],
)
def test_contradictory_or_empty_keywords_are_refused(
    opt_out: dict[str, list[str]], opt_in: dict[str, list[str]]
) -> None:
    with pytest.raises(ValueError, match="keyword"):
        KeywordTable(opt_out, opt_in)


def test_settings_check_keywords_and_their_languages_at_start_up() -> None:
    with pytest.raises(ValidationError, match="cannot both opt out and opt in"):
        Settings(opt_out_keywords={"en": ["START"]})
    with pytest.raises(ValidationError, match="ISO 639-1"):
        Settings(opt_out_keywords={"spanish": ["BAJA"]})
    assert Settings(opt_in_keywords={"es": ["VOLVER"]}).keyword_table().match("volver")
