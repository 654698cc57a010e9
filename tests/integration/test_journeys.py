"""Journeys: a template scheduled relative to reservations, sent once per reservation at the
hotel's time, after quiet hours, in the guest's language, never to a guest who opted out; and
the CLI that configures them."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import asyncpg
import pytest

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.templates import Journey, Template
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.services import journeys, replies
from hotelchat.services.ports import Reservation
from tests.conftest import Backing, Tenant, run_jobs
from tests.helpers import hotelchat, receive

GUEST_PHONE = "+34600111222"
EN = Template(
    "HX" + "1" * 32, "pre_arrival", "en", "Hi {{1}}, we expect you on {{2}}. Room: {{3}}."
)
ES = Template("HX" + "2" * 32, "pre_arrival", "es", "Hola {{1}}, le esperamos el {{2}}.")
MADRID = "Europe/Madrid"


def day_before_at_ten(**changes: object) -> Journey:
    values: dict[str, object] = {
        "id": 0,
        "name": "pre-arrival",
        "template_name": "pre_arrival",
        "anchor": "check_in",
        "offset_days": -1,
        "send_time": time(10, 0),
        "variables": {"1": "first_name", "2": "check_in", "3": "room_type"},
    }
    values.update(changes)
    return Journey(**values)  # type: ignore[arg-type]


async def arrange(
    container: Container,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio: TwilioEmulator,
    journey: Journey,
    check_in: date,
) -> None:
    """The hotel in Madrid time with both variants (registered at Twilio too) and one
    reservation of a guest with a phone number."""
    await admin.execute("UPDATE hotels SET timezone = $1 WHERE id = $2", MADRID, tenant.hotel_id)
    store = container.deps.templates
    assert store is not None
    for template in (EN, ES):
        twilio.add_content(
            tenant.account_sid,
            sid=template.content_sid,
            friendly_name=template.friendly_name,
            language=template.language,
            body=template.body,
        )
        await store.save_template(tenant.hotel_id, template)
    await store.add_journey(tenant.hotel_id, journey)
    stay = Reservation(
        "BK-1001",
        "Lucía Pérez",
        check_in,
        check_in + timedelta(days=3),
        room_type="Sea view double",
        phone_number=GUEST_PHONE,
    )
    await container.deps.reservations.upsert_many(tenant.hotel_id, [stay], source="test")


def madrid(day: date, hour: int, minute: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(MADRID))


async def test_the_day_before_arrival_at_ten_hotel_time_once(
    container: Container,
    tenant: Tenant,
    admin: asyncpg.Connection,
    settings: Settings,
    twilio_emulator: TwilioEmulator,
) -> None:
    check_in = date(2026, 7, 15)
    await arrange(container, tenant, admin, twilio_emulator, day_before_at_ten(), check_in)
    deps = container.deps
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 9, 59)) == 0
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 10, 0)) == 1
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 10, 1)) == 0
    await run_jobs(settings)
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 11, 0)) == 0
    (sent,) = twilio_emulator.sent()
    assert sent.to == f"whatsapp:{GUEST_PHONE}" and sent.content_sid == EN.content_sid
    assert sent.body == "Hi Lucía, we expect you on 2026-07-15. Room: Sea view double."
    row = await admin.fetchrow(
        """SELECT m.author, m.body, m.provider_sid, c.channel, g.phone_number, s.outcome
           FROM journey_sends s JOIN messages m ON m.id = s.message_id
           JOIN conversations c ON c.id = m.conversation_id JOIN guests g ON g.id = c.guest_id"""
    )
    assert dict(row or {}) == {
        "author": "system",
        "body": sent.body,
        "provider_sid": sent.sid,
        "channel": "whatsapp",
        "phone_number": GUEST_PHONE,
        "outcome": "queued",
    }


async def test_a_send_in_quiet_hours_waits_for_their_end(
    container: Container, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    journey = day_before_at_ten(
        send_time=time(7, 0), quiet_start=time(22, 0), quiet_end=time(8, 30)
    )
    await arrange(container, tenant, admin, twilio_emulator, journey, date(2026, 7, 15))
    deps = container.deps
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 7, 0)) == 0
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 8, 29)) == 0
    assert await journeys.run_due(deps, madrid(date(2026, 7, 14), 8, 30)) == 1


async def test_the_guest_language_chooses_the_variant(
    container: Container, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    await arrange(container, tenant, admin, twilio_emulator, day_before_at_ten(), date(2026, 7, 15))
    await admin.execute(
        """INSERT INTO guests (hotel_id, wa_id, phone_number, language)
           VALUES ($1, '34600111222', $2, 'es')""",
        tenant.hotel_id,
        GUEST_PHONE,
    )
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 10, 0)) == 1
    body = await admin.fetchval("SELECT body FROM messages WHERE direction = 'outbound'")
    assert body == "Hola Lucía, le esperamos el 2026-07-15."


async def test_a_message_too_late_is_not_sent(
    container: Container, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    await arrange(container, tenant, admin, twilio_emulator, day_before_at_ten(), date(2026, 7, 15))
    # The worker was down from 10:00 until after 22:00: the message is not sent that late.
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 22, 1)) == 0
    assert await admin.fetchval("SELECT count(*) FROM messages") == 0


async def test_an_opted_out_guest_gets_nothing(
    container: Container,
    tenant: Tenant,
    admin: asyncpg.Connection,
    settings: Settings,
    twilio_emulator: TwilioEmulator,
) -> None:
    await arrange(container, tenant, admin, twilio_emulator, day_before_at_ten(), date(2026, 7, 15))
    # The guest writes STOP on WhatsApp: opted out in the register, with one confirmation.
    stop = await receive(container, tenant, "STOP", guest=GUEST_PHONE)
    outcome = await replies.reply_to_inbound(container.deps, tenant.hotel_id, stop)
    assert outcome.startswith("opted out"), outcome
    await run_jobs(settings)
    assert len(twilio_emulator.sent()) == 1  # the confirmation
    messages = await admin.fetchval("SELECT count(*) FROM messages")
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 10, 0)) == 0
    await run_jobs(settings)
    assert len(twilio_emulator.sent()) == 1
    assert await admin.fetchval("SELECT outcome FROM journey_sends") == "opted_out"
    assert await admin.fetchval("SELECT count(*) FROM messages") == messages
    # Handled for good: opting in later does not send a stale pre-arrival message.
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 10, 5)) == 0


async def test_missing_phone_template_or_variables_are_recorded_not_sent(
    container: Container, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    journey = day_before_at_ten(variables={"1": "first_name"})  # {{2}}, {{3}} have no value
    await arrange(container, tenant, admin, twilio_emulator, journey, date(2026, 7, 15))
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 10, 0)) == 0
    assert await admin.fetchval("SELECT outcome FROM journey_sends") == "invalid_variables"
    assert await admin.fetchval("SELECT count(*) FROM messages") == 0


async def test_another_hotels_reservations_are_not_seen(
    container: Container,
    tenant: Tenant,
    other_tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:
    await arrange(container, tenant, admin, twilio_emulator, day_before_at_ten(), date(2026, 7, 15))
    assert container.deps.templates is not None
    await container.deps.templates.add_journey(other_tenant.hotel_id, day_before_at_ten())
    await container.deps.templates.save_template(other_tenant.hotel_id, EN)
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 10, 0)) == 1
    hotels = await admin.fetch("SELECT DISTINCT hotel_id FROM journey_sends")
    assert [r["hotel_id"] for r in hotels] == [tenant.hotel_id]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--anchor", "check_in", "--days", "-1", "--at", "25:00"], "--at must be HH:MM"),
        (["--anchor", "check_in", "--days", "-90", "--at", "10:00"], "within 60 days"),
        (
            ["--anchor", "check_in", "--days", "-1", "--at", "10:00", "--var", "1=passport"],
            "no reservation field",
        ),
        (
            ["--anchor", "check_in", "--days", "-1", "--at", "10:00", "--quiet", "22:00"],
            "HH:MM-HH:MM",
        ),
    ],
)
def test_the_cli_refuses_bad_journeys(
    backing: Backing, tenant: Tenant, args: list[str], error: str
) -> None:
    done = hotelchat(
        backing,
        "s" * 40,
        "journeys",
        "add",
        "--hotel",
        tenant.slug,
        "--name",
        "pre",
        "--template",
        "pre_arrival",
        *args,
    )
    assert done.returncode != 0 and error in done.stderr, done.stderr


def test_the_cli_adds_lists_and_removes_journeys(backing: Backing, tenant: Tenant) -> None:
    added = hotelchat(
        backing,
        "s" * 40,
        "journeys",
        "add",
        "--hotel",
        tenant.slug,
        "--name",
        "pre-arrival",
        "--template",
        "pre_arrival",
        "--anchor",
        "check_in",
        "--days",
        "-1",
        "--at",
        "10:00",
        "--quiet",
        "22:00-08:00",
        "--var",
        "1=first_name",
    )
    assert added.returncode == 0, added.stderr
    twice = hotelchat(
        backing,
        "s" * 40,
        "journeys",
        "add",
        "--hotel",
        tenant.slug,
        "--name",
        "pre-arrival",
        "--template",
        "pre_arrival",
        "--anchor",
        "check_in",
        "--days",
        "-1",
        "--at",
        "10:00",
    )
    assert twice.returncode == 1 and "has a journey called" in twice.stderr
    listed = hotelchat(backing, "s" * 40, "journeys", "list", "--hotel", tenant.slug)
    assert "pre-arrival\tpre_arrival\tcheck_in-1d 10:00\tquiet 22:00-08:00\t1=first_name" in (
        listed.stdout
    )
    unknown = hotelchat(backing, "s" * 40, "journeys", "list", "--hotel", "nowhere")
    assert unknown.returncode == 1 and "no hotel 'nowhere'" in unknown.stderr
    removed = hotelchat(
        backing, "s" * 40, "journeys", "remove", "--hotel", tenant.slug, "--name", "pre-arrival"
    )
    assert removed.returncode == 0, removed.stderr


async def test_erasing_a_hotel_erases_its_templates_journeys_and_sends(
    container: Container, tenant: Tenant, admin: asyncpg.Connection, twilio_emulator: TwilioEmulator
) -> None:
    await arrange(container, tenant, admin, twilio_emulator, day_before_at_ten(), date(2026, 7, 15))
    assert await journeys.run_due(container.deps, madrid(date(2026, 7, 14), 10, 0)) == 1
    await admin.fetch("SELECT * FROM hotelchat_erase_hotel($1)", tenant.hotel_id)
    for table in ("whatsapp_templates", "outbound_templates", "journeys", "journey_sends"):
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 0, table
