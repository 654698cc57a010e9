"""WhatsApp template rules: placeholders, WhatsApp's variable rules, choosing by language, and
when a journey's message is due (hotel time, quiet hours)."""

from __future__ import annotations

from datetime import date, time
from zoneinfo import ZoneInfo

import pytest

from hotelchat.domain.errors import InvalidInput
from hotelchat.domain.model import whatsapp_window_open
from hotelchat.domain.templates import (
    Journey,
    Template,
    check_template,
    check_variables,
    choose,
    due_at,
    in_quiet_hours,
    render,
)

SID = "HX" + "a" * 32
T = Template(SID, "pre_arrival", "en", "Hi {{1}}, see you on {{2}}!", {"1": "Ana", "2": "May 3"})


def test_render_fills_placeholders_in_order() -> None:
    assert T.placeholders == ["1", "2"]
    assert render(T.body, {"1": "Ana", "2": "3 May"}) == "Hi Ana, see you on 3 May!"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"1": "Ana"}, "{{2}} is missing"),
        ({"1": "Ana", "2": "  "}, "{{2}} is missing"),
        ({"1": "Ana\nGarcía", "2": "x"}, "{{1}} has a newline"),
        ({"1": "Ana\tGarcía", "2": "x"}, "{{1}} has a newline, a tab"),
        ({"1": "Ana     García", "2": "x"}, "more than four spaces"),
        ({"1": "A" * 201, "2": "x"}, "longer than 200"),
        ({"1": "Ana", "2": "x", "3": "y"}, "unknown variables: 3"),
    ],
)
def test_bad_variables_are_named(values: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_variables(T, values)
    assert problem in caught.value.message
    assert caught.value.code == "invalid_variables"


def test_four_spaces_are_allowed_and_values_trimmed() -> None:
    assert check_variables(T, {"1": " Ana    G ", "2": "x"}) == {"1": "Ana    G", "2": "x"}


def test_the_rendered_message_must_fit_1024_characters() -> None:
    long = Template(SID, "n", "en", "x" * 900 + " {{1}}")
    with pytest.raises(InvalidInput, match="longer than 1024"):
        check_variables(long, {"1": "y" * 200})


@pytest.mark.parametrize("body", ["Hi {{}}", "Hi {{1}", "Hi {1}}", "x" * 1025, "  ", "Hi {{a b}}"])
def test_malformed_templates_are_refused(body: str) -> None:
    with pytest.raises(InvalidInput):
        check_template(Template(SID, "n", "en", body))


def test_malformed_sid_name_language_are_refused() -> None:
    for bad in (
        Template("HX123", "n", "en", "b"),
        Template(SID, "has space", "en", "b"),
        Template(SID, "n", "English", "b"),
        Template(SID, "n", "en", "b {{1}}", {"2": "x"}),
    ):
        with pytest.raises(InvalidInput):
            check_template(bad)


def test_choose_prefers_the_guest_language_then_the_hotel_default() -> None:
    es = Template("HX" + "b" * 32, "pre_arrival", "es", "Hola {{1}}")
    pt = Template("HX" + "c" * 32, "pre_arrival", "pt_BR", "Olá {{1}}")
    unapproved = Template("HX" + "d" * 32, "pre_arrival", "fr", "Salut", approval_status="pending")
    options = [T, es, pt, unapproved]
    assert choose(options, "pre_arrival", ["es", "en"]) is es
    assert choose(options, "pre_arrival", ["pt", "en"]) is pt
    assert choose(options, "pre_arrival", ["fr", "en"]) is T  # the French one is not approved
    assert choose(options, "pre_arrival", [None, "de"]) is None
    assert choose(options, "other", ["en"]) is None


def journey(**changes: object) -> Journey:
    values: dict[str, object] = {
        "id": 1, "name": "pre", "template_name": "pre_arrival", "anchor": "check_in",
        "offset_days": -1, "send_time": time(10, 0),
    }  # fmt: skip
    values.update(changes)
    return Journey(**values)  # type: ignore[arg-type]


def test_due_the_day_before_at_ten_hotel_time() -> None:
    due = due_at(journey(), date(2026, 5, 3), "Europe/Madrid")
    assert due.isoformat() == "2026-05-02T10:00:00+02:00"
    assert due.astimezone(ZoneInfo("UTC")).hour == 8


def test_quiet_hours_move_a_send_to_their_end() -> None:
    early = journey(send_time=time(7, 0), quiet_start=time(22, 0), quiet_end=time(8, 0))
    assert due_at(early, date(2026, 5, 3), "UTC").isoformat() == "2026-05-02T08:00:00+00:00"
    late = journey(send_time=time(23, 0), quiet_start=time(22, 0), quiet_end=time(8, 0))
    assert due_at(late, date(2026, 5, 3), "UTC").isoformat() == "2026-05-03T08:00:00+00:00"
    midday = journey(send_time=time(13, 0), quiet_start=time(12, 0), quiet_end=time(14, 30))
    assert due_at(midday, date(2026, 5, 3), "UTC").isoformat() == "2026-05-02T14:30:00+00:00"
    outside = journey(send_time=time(10, 0), quiet_start=time(22, 0), quiet_end=time(8, 0))
    assert due_at(outside, date(2026, 5, 3), "UTC").hour == 10


def test_quiet_hours_may_wrap_midnight() -> None:
    assert in_quiet_hours(time(23, 30), time(22, 0), time(8, 0))
    assert in_quiet_hours(time(7, 59), time(22, 0), time(8, 0))
    assert not in_quiet_hours(time(8, 0), time(22, 0), time(8, 0))
    assert not in_quiet_hours(time(9, 0), None, None)


def test_a_63016_closes_the_window_until_the_guest_writes_again() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 5, 3, 12, tzinfo=UTC)
    wrote = now - timedelta(hours=1)
    assert whatsapp_window_open(wrote, now)
    assert not whatsapp_window_open(wrote, now, closed_at=now - timedelta(minutes=1))
    assert whatsapp_window_open(wrote, now, closed_at=wrote - timedelta(minutes=1))
