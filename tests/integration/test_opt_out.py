"""Opt-out and opt-in: STOP (in each default language) opts a guest out of the hotel's
proactive messages with one confirmation, START opts them back in; replays, repeats and other
hotels change nothing; the assistant never answers a keyword, and still answers questions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.consent import OPTED_IN_CONFIRMATION, OPTED_OUT_CONFIRMATION
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.entrypoints.web.app import create_app
from hotelchat.services import consent, inbound, replies
from tests.conftest import PUBLIC_URL, Backing, Tenant, create_agent
from tests.helpers import GUEST, INBOUND_PATH, login, receive, signature
from tests.helpers import inbound as inbound_params

Build = Callable[..., Awaitable[Container]]


async def guest_id(admin: asyncpg.Connection, tenant: Tenant, phone: str = GUEST) -> int:
    found = await admin.fetchval(
        "SELECT id FROM guests WHERE hotel_id = $1 AND phone_number = $2", tenant.hotel_id, phone
    )
    assert found is not None
    return int(found)


async def consent_row(admin: asyncpg.Connection, tenant: Tenant) -> asyncpg.Record | None:
    return await admin.fetchrow("SELECT * FROM guest_consents WHERE hotel_id = $1", tenant.hotel_id)


async def answer(container: Container, tenant: Tenant, text: str) -> tuple[int, str]:
    message_id = await receive(container, tenant, text)
    return message_id, await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)


@pytest.mark.parametrize(
    ("keyword", "language"),
    [("STOP", "en"), ("unsubscribe", "en"), ("Stop!", "en"), ("BAJA", "es"),
     ("dar de baja", "es"), ("SAIR", "pt"), ("ARRET", "fr"), ("Arrêt", "fr"),
     ("ABMELDEN", "de"), ("stopp", "de"), ("DISISCRIVIMI", "it"), ("AFMELDEN", "nl")],
)  # fmt: skip
async def test_each_languages_keyword_opts_out_with_one_confirmation_in_that_language(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
    keyword: str, language: str,
) -> None:  # fmt: skip
    message_id, outcome = await answer(container, tenant, keyword)
    assert outcome.startswith("opted out; confirmation sent")
    (sent,) = twilio_emulator.sent()
    assert sent.body == OPTED_OUT_CONFIRMATION[language]
    assert list(openai_emulator.requests) == [], "the model saw the keyword"
    row = await consent_row(admin, tenant)
    assert row is not None and row["opted_out"] and row["message_id"] == message_id
    assert row["changed_at"] is not None
    reply = await admin.fetchrow("SELECT * FROM messages WHERE in_reply_to = $1", message_id)
    assert reply is not None
    assert (reply["responder"], reply["author"], reply["provider_sid"]) == (
        "consent", "system", sent.sid
    )  # fmt: skip
    assert await consent.is_opted_out(
        container.deps, tenant.hotel_id, await guest_id(admin, tenant)
    )


async def test_parar_is_spanish_and_portuguese(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator
) -> None:
    _, outcome = await answer(container, tenant, "PARAR")
    assert outcome.startswith("opted out")
    (sent,) = twilio_emulator.sent()
    assert sent.body in (OPTED_OUT_CONFIRMATION["es"], OPTED_OUT_CONFIRMATION["pt"])


async def test_start_opts_back_in_and_each_change_is_confirmed_once(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    guest = GUEST
    assert (await answer(container, tenant, "START"))[1] == "unchanged"  # never opted out
    assert twilio_emulator.sent() == []
    assert (await answer(container, tenant, "STOP"))[1].startswith("opted out")
    assert (await answer(container, tenant, "stop"))[1] == "unchanged"  # no second confirmation
    assert (await answer(container, tenant, "START"))[1].startswith("opted in")
    assert (await answer(container, tenant, "Start."))[1] == "unchanged"
    bodies = [m.body for m in twilio_emulator.sent(f"whatsapp:{guest}")]
    assert bodies == [OPTED_OUT_CONFIRMATION["en"], OPTED_IN_CONFIRMATION["en"]]
    row = await consent_row(admin, tenant)
    assert row is not None and not row["opted_out"] and row["keyword"] == "START"
    skipped = await admin.fetchval(
        "SELECT count(*) FROM messages WHERE direction = 'inbound' AND reply_state = 'skipped'"
    )
    assert skipped == 3  # START (never out), the second STOP, the second START


async def test_a_replayed_messagesid_and_a_rerun_job_confirm_nothing_twice(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    params = inbound_params(tenant, "STOP")
    url = PUBLIC_URL + INBOUND_PATH
    first = await inbound.receive_whatsapp(
        container.deps, params, url=url, signature=signature(tenant, params)
    )
    again = await inbound.receive_whatsapp(
        container.deps, params, url=url, signature=signature(tenant, params)
    )
    assert again.duplicate and again.message_id == first.message_id
    assert first.message_id is not None
    for _ in range(3):  # the job queued twice, and re-run once more
        await replies.reply_to_inbound(container.deps, tenant.hotel_id, first.message_id)
    assert len(twilio_emulator.sent()) == 1
    assert await admin.fetchval("SELECT count(*) FROM guest_consents") == 1
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 1


async def test_opting_out_at_one_hotel_leaves_the_guest_opted_in_at_another(
    container: Container, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection
) -> None:
    await answer(container, tenant, "STOP")
    await receive(container, other_tenant, "Hello")
    a_guest, b_guest = await guest_id(admin, tenant), await guest_id(admin, other_tenant)
    assert await consent.is_opted_out(container.deps, tenant.hotel_id, a_guest)
    assert not await consent.is_opted_out(container.deps, other_tenant.hotel_id, b_guest)
    # Row-level security: hotel B cannot read hotel A's consent row, even by A's guest id.
    assert not await consent.is_opted_out(container.deps, other_tenant.hotel_id, a_guest)
    with pytest.raises(consent.OptedOut):
        await consent.check_may_message_proactively(container.deps, tenant.hotel_id, a_guest)
    await consent.check_may_message_proactively(container.deps, other_tenant.hotel_id, b_guest)


@pytest.mark.parametrize(
    "text",
    ["please stop the music in room 12", "STOP STOP", "stopping by at 5", "¿Puedo parar aquí?",
     "S T O P", "STOP" + "!" * 200],
)  # fmt: skip
async def test_a_message_that_is_more_than_a_keyword_is_a_question_for_the_assistant(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator, text: str,
) -> None:  # fmt: skip
    _, outcome = await answer(container, tenant, text)
    assert outcome == "sent"
    assert len(openai_emulator.requests) == 1
    assert await consent_row(admin, tenant) is None


async def test_after_stop_the_guests_own_questions_are_still_answered(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    await answer(container, tenant, "STOP")
    openai_emulator.answer_next("Parking is EUR 18 per day in our underground garage.")
    _, outcome = await answer(container, tenant, "Is there parking?")
    assert outcome == "sent"
    assert twilio_emulator.sent()[-1].body.startswith("Parking is EUR 18")
    assert await consent.is_opted_out(
        container.deps, tenant.hotel_id, await guest_id(admin, tenant)
    )


async def test_stop_counts_when_an_agent_owns_the_conversation(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    await receive(container, tenant, "Hello")
    await admin.execute("UPDATE conversations SET state = 'agent' WHERE hotel_id = $1",
                        tenant.hotel_id)  # fmt: skip
    _, outcome = await answer(container, tenant, "STOP")
    assert outcome.startswith("opted out")
    assert list(openai_emulator.requests) == []


async def test_configured_keywords_replace_a_languages_defaults(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(opt_out_keywords={"es": ["BASTA YA"]})
    assert (await answer(container, tenant, "basta ya"))[1].startswith("opted out")
    assert twilio_emulator.sent()[0].body == OPTED_OUT_CONFIRMATION["es"]
    # BAJA was Spanish's default; the configured list replaced it.
    await admin.execute("UPDATE guest_consents SET opted_out = false")
    assert (await answer(container, tenant, "BAJA"))[1] == "sent"


async def test_consents_and_message_parts_are_row_level_secured(
    container: Container, tenant: Tenant, other_tenant: Tenant, backing: Backing,
    admin: asyncpg.Connection, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    await answer(container, tenant, "STOP")
    openai_emulator.answer_next("Our concierge can book a table for you tonight. " * 70)
    assert (await answer(container, tenant, "Ideas for tonight?"))[1] == "sent in 3 parts"
    tables = ("guest_consents", "message_parts")
    for table in tables:
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") > 0, table
    conn = await asyncpg.connect(backing.app_dsn)
    try:
        for hotel, expected in ((None, False), (other_tenant.hotel_id, False),
                                (tenant.hotel_id, True)):  # fmt: skip
            async with conn.transaction():
                if hotel is not None:
                    await conn.execute(
                        "SELECT set_config('hotelchat.hotel_id', $1, true)", str(hotel)
                    )
                for table in tables:
                    seen = await conn.fetchval(f"SELECT count(*) FROM {table}")
                    assert (seen > 0) is expected, (table, hotel)
                    if hotel == other_tenant.hotel_id:
                        with pytest.raises(asyncpg.InsufficientPrivilegeError):
                            async with conn.transaction():
                                await conn.execute(
                                    "INSERT INTO guest_consents (hotel_id, guest_id, opted_out,"
                                    " keyword) VALUES ($1, 1, true, 'STOP')",
                                    tenant.hotel_id,
                                )
    finally:
        await conn.close()


async def test_agents_see_the_opt_out_over_the_api_of_their_hotel_only(
    settings: Settings, container: Container, tenant: Tenant, other_tenant: Tenant,
    admin: asyncpg.Connection,
) -> None:  # fmt: skip
    await answer(container, tenant, "STOP")
    conversation_id = await admin.fetchval("SELECT id FROM conversations")
    await create_agent(admin, "ana@a.test", [tenant.slug])
    await create_agent(admin, "bo@b.test", [other_tenant.slug])
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert await login(client, "ana@a.test") == 303
        response = await client.get(f"/api/conversations/{conversation_id}")
        body = await response.get_json()
        assert body["opted_out_at"] is not None
        other = test_app.test_client()
        assert await login(other, "bo@b.test") == 303
        assert (await other.get(f"/api/conversations/{conversation_id}")).status_code == 404
