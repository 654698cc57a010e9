"""WhatsApp templates as pure rules: placeholders, rendering, WhatsApp's variable rules, choosing a
template by language, and when a journey's message is due.

Facts:
- Outside the 24-hour window only approved templates may be sent, with `ContentSid` and
  `ContentVariables` and no `Body` (https://www.twilio.com/docs/api/errors/63016).
- Placeholders are `{{1}}`, `{{2}}`…; a value may not be empty, nor contain a newline, a tab or
  more than four consecutive spaces (https://www.twilio.com/docs/api/errors/21656,
  https://www.twilio.com/docs/content/using-variables-with-content-api).
- A WhatsApp template's body is at most 1,024 characters
  (https://www.twilio.com/docs/whatsapp/tutorial/message-template-approvals-statuses).
- Content resources and their approval status:
  https://www.twilio.com/docs/content/content-api-resources
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hotelchat.domain.errors import InvalidInput

CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]{1,32})\s*\}\}")
MAX_BODY_CHARS = 1024  # WhatsApp's limit on a template's body
MAX_VARIABLE_CHARS = 200  # ours: a value is a name, a date, a room, a code
MAX_VARIABLES = 20
_BAD_VALUE = re.compile(r"[\n\r\t]| {5,}")
APPROVED = "approved"
# Reservation fields a journey's variables may name.
RESERVATION_FIELDS = ("guest_name", "first_name", "check_in", "check_out", "room_type", "code",
                      "hotel_name", "nights")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Template:
    """One of a hotel's WhatsApp templates: a Twilio Content resource (`content_sid` `HX…`) in
    one language. `variables` maps each placeholder to its sample (default) value."""

    content_sid: str
    friendly_name: str
    language: str
    body: str
    variables: Mapping[str, str] = field(default_factory=dict)
    approval_status: str = APPROVED
    source: str = "manual"

    @property
    def approved(self) -> bool:
        return self.approval_status.lower() == APPROVED

    @property
    def placeholders(self) -> list[str]:
        return placeholders(self.body)


def placeholders(body: str) -> list[str]:
    """The placeholder names of `body` in order of first appearance (`["1", "2"]`)."""
    seen: list[str] = []
    for match in PLACEHOLDER.finditer(body):
        if match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def check_template(template: Template) -> Template:
    """`template` if well formed; raises `InvalidInput` naming what is not."""
    if not CONTENT_SID.fullmatch(template.content_sid):
        raise InvalidInput("content_sid must be HX followed by 32 hex digits")
    if not TEMPLATE_NAME.fullmatch(template.friendly_name):
        raise InvalidInput("the name may use letters, digits, _ . - (up to 200)")
    if not LANGUAGE.fullmatch(template.language):
        raise InvalidInput("language must be an ISO 639-1 code such as en or pt_BR")
    if not template.body.strip() or len(template.body) > MAX_BODY_CHARS:
        raise InvalidInput(f"the body must have 1 to {MAX_BODY_CHARS} characters")
    # What is left of braces once the well-formed placeholders are gone: `{{}}`, `{{1}`, `{1}}`.
    rest = PLACEHOLDER.sub("", template.body)
    if "{{" in rest or "}}" in rest:
        raise InvalidInput("the body has a malformed placeholder (use {{1}}, {{2}}, …)")
    names = placeholders(template.body)
    if len(names) > MAX_VARIABLES:
        raise InvalidInput(f"at most {MAX_VARIABLES} placeholders")
    if set(template.variables) - set(names):
        raise InvalidInput("variables name placeholders the body does not have")
    return template


def check_variables(template: Template, values: Mapping[str, object]) -> dict[str, str]:
    """The variables to send with `template`: every placeholder given, each a non-empty string
    of at most 200 characters with no newline, tab or run of more than four spaces, and the
    rendered body within 1,024 characters. Raises `InvalidInput` naming every problem."""
    names = template.placeholders
    problems: list[str] = []
    unknown = sorted(set(values) - set(names))
    if unknown:
        problems.append(f"unknown variables: {', '.join(unknown)}")
    checked: dict[str, str] = {}
    for name in names:
        value = values.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{{{{{name}}}}} is missing")
        elif len(value) > MAX_VARIABLE_CHARS:
            problems.append(f"{{{{{name}}}}} is longer than {MAX_VARIABLE_CHARS} characters")
        elif _BAD_VALUE.search(value):
            problems.append(
                f"{{{{{name}}}}} has a newline, a tab or more than four spaces in a row"
            )
        else:
            checked[name] = value.strip()
    if not problems and len(render(template.body, checked)) > MAX_BODY_CHARS:
        problems.append(f"the message is longer than {MAX_BODY_CHARS} characters")
    if problems:
        raise InvalidInput("; ".join(problems), code="invalid_variables")
    return checked


def render(body: str, values: Mapping[str, str]) -> str:
    """`body` with each `{{name}}` replaced by its value (left as is when it has none)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body)


def choose(
    templates: Sequence[Template], name: str, languages: Sequence[str | None]
) -> Template | None:
    """The approved template called `name` in the first of `languages` that has one (the
    guest's language, then the hotel's default); a regional variant (`pt_BR`) counts for its
    language (`pt`)."""
    approved = [t for t in templates if t.friendly_name == name and t.approved]
    for language in languages:
        if not language:
            continue
        for template in approved:
            if template.language == language:
                return template
        for template in approved:
            if template.language.split("_")[0] == language.split("_")[0]:
                return template
    return None


# --- journeys -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Journey:
    """A template a hotel sends relative to a reservation: `offset_days` from check-in or
    check-out at `send_time` hotel time, waiting out quiet hours `[quiet_start, quiet_end)`."""

    id: int
    name: str
    template_name: str
    anchor: str  # check_in | check_out
    offset_days: int
    send_time: time
    quiet_start: time | None = None
    quiet_end: time | None = None
    variables: Mapping[str, str] = field(default_factory=dict)  # placeholder -> field
    enabled: bool = True


def in_quiet_hours(moment: time, start: time | None, end: time | None) -> bool:
    """Whether `moment` falls in `[start, end)`; the span may wrap midnight (22:00 to 08:00)."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def due_at(journey: Journey, anchor: date, timezone: str) -> datetime:
    """When `journey`'s message for a stay anchored on `anchor` (its check-in or check-out date)
    is due, as an aware datetime: the day `offset_days` away at `send_time` in the hotel's
    `timezone`, moved to the end of quiet hours when it falls inside them."""
    zone = ZoneInfo(timezone)
    day = anchor + timedelta(days=journey.offset_days)
    local = datetime.combine(day, journey.send_time, tzinfo=zone)
    if in_quiet_hours(local.time(), journey.quiet_start, journey.quiet_end):
        assert journey.quiet_end is not None
        end_day = day if local.time() < journey.quiet_end else day + timedelta(days=1)
        local = datetime.combine(end_day, journey.quiet_end, tzinfo=zone)
    return local


def reservation_values(fields: Mapping[str, str], mapping: Mapping[str, str]) -> dict[str, str]:
    """A journey's variables: each placeholder's reservation field looked up in `fields`
    (missing fields are left out, for `check_variables` to report)."""
    return {name: fields[source] for name, source in mapping.items() if fields.get(source)}


def check_journey_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    """`mapping` (placeholder -> reservation field) if every field is one we know; raises
    `InvalidInput`."""
    for name, source in mapping.items():
        if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", name):
            raise InvalidInput(f"placeholder {name!r} is malformed")
        if source not in RESERVATION_FIELDS:
            known = ", ".join(RESERVATION_FIELDS)
            raise InvalidInput(f"{source!r} is no reservation field (one of {known})")
    return dict(mapping)
