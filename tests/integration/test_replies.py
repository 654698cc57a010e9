"""The reply job: grounded answers from the model or the knowledge base, a holding message and a
handoff when the model fails, and exactly one reply however often the job runs or dies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.domain.errors import TemporaryFailure
from hotelchat.emulators import openai_api
from hotelchat.emulators.openai_api import OpenAIEmulator
from hotelchat.emulators.twilio_api import Fault as TwilioFault
from hotelchat.emulators.twilio_api import TwilioEmulator
from hotelchat.services import outbound, replies
from hotelchat.services.ports import DraftReply, ReplyClaimed, ReplySkipped
from tests.conftest import Tenant, run_jobs
from tests.e2e.processes import wait_until
from tests.helpers import GUEST, receive, reply_row

Build = Callable[..., Awaitable[Container]]


async def test_without_a_model_the_knowledge_base_answers(
    build_container: Build,
    settings: Settings,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:
    no_key = settings.model_copy(update={"openai_api_key": None})
    container = await build_container(openai_api_key=None)
    message_id = await receive(container, tenant, "Is there parking?")
    await run_jobs(no_key)
    sent = twilio_emulator.sent()
    assert [(m.to, m.from_, m.body) for m in sent] == [
        (f"whatsapp:{GUEST}", f"whatsapp:{tenant.phone_number}",
         "Parking costs EUR 18 per day in our underground garage."),
    ]  # fmt: skip
    reply = await reply_row(admin, message_id)
    assert reply["responder"] == "knowledge_base"
    assert reply["provider_sid"] == sent[0].sid
    assert reply["status"] == "queued"
    assert reply["author"] == "ai"
    assert reply["conversation_state"] == "ai"
    assert list(openai_emulator.requests) == []
    inbound_row = await admin.fetchrow("SELECT reply_state FROM messages WHERE id = $1", message_id)
    assert inbound_row is not None and inbound_row["reply_state"] == "answered"


async def test_without_a_matching_passage_the_guest_is_handed_to_staff(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(openai_api_key=None)
    message_id = await receive(container, tenant, "¿Puedo traer a mi caballo al concierto?")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    reply = await reply_row(admin, message_id)
    assert reply["conversation_state"] == "needs_human"
    assert reply["handoff_reason"] == "no knowledge-base entry answers the question"
    assert "equipo" in twilio_emulator.sent()[0].body  # in the guest's language (Spanish)


async def test_the_model_answers_from_the_matching_passage(
    container: Container,
    settings: Settings,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:
    openai_emulator.answer_next("Yes! Parking is EUR 18 per day in our underground garage.")
    message_id = await receive(container, tenant, "Is there parking?")
    await run_jobs(settings)
    (request,) = openai_emulator.requests
    assert request["model"] == "gpt-4o-mini"
    system = request["messages"][0]
    assert system["role"] == "system"
    assert "Parking costs EUR 18 per day in our underground garage." in system["content"]
    assert request["messages"][-1] == {"role": "user", "content": "Is there parking?"}
    (sent,) = twilio_emulator.sent()
    assert sent.body == "Yes! Parking is EUR 18 per day in our underground garage."
    reply = await reply_row(admin, message_id)
    assert reply["responder"] == "openai"
    assert reply["provider_sid"] == sent.sid
    assert reply["model"] == "gpt-4o-mini"
    assert reply["prompt_tokens"] > 0 and reply["completion_tokens"] > 0


async def test_the_conversation_so_far_is_in_the_prompt(
    container: Container, tenant: Tenant, openai_emulator: OpenAIEmulator
) -> None:
    first = await receive(container, tenant, "Hi, I arrive tomorrow")
    await replies.reply_to_inbound(container.deps, tenant.hotel_id, first)
    second = await receive(container, tenant, "What time is breakfast?")
    await replies.reply_to_inbound(container.deps, tenant.hotel_id, second)
    roles = [(m["role"], m["content"]) for m in openai_emulator.requests[-1]["messages"][1:]]
    assert roles[0] == ("user", "Hi, I arrive tomorrow")
    assert roles[1][0] == "assistant"
    assert roles[2] == ("user", "What time is breakfast?")


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (openai_api.Fault(delay=1.5), "timeout"),
        (openai_api.RATE_LIMITED, "rate_limited"),
        (openai_api.SERVER_ERROR, "server_error"),
        (openai_api.QUOTA_EXCEEDED, "quota"),
    ],
    ids=["timeout", "429", "500", "insufficient_quota"],
)
async def test_a_failing_model_sends_a_holding_message_and_hands_off(
    build_container: Build,
    tenant: Tenant,
    admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
    fault: openai_api.Fault,
    kind: str,
) -> None:
    container = await build_container(openai_timeout_seconds=0.5, openai_max_retries=1)
    openai_emulator.fail_next(fault, times=2)  # the first try and the client's one retry
    message_id = await receive(container, tenant, "¿A qué hora es el desayuno?")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    (sent,) = twilio_emulator.sent()
    assert sent.body.startswith("Gracias por su mensaje")
    reply = await reply_row(admin, message_id)
    assert (reply["author"], reply["responder"]) == ("system", "holding")
    assert reply["conversation_state"] == "needs_human"
    assert reply["handoff_reason"] == f"the assistant is unavailable ({kind})"
    failures = [r.msg for r in caplog.records if isinstance(r.msg, dict)
                and r.msg.get("event") == "reply.model_failed"]  # fmt: skip
    assert failures and failures[0]["error_class"] == kind
    assert "Traceback" not in sent.body


async def test_a_stalled_attempt_is_retried_within_the_deadline(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    """A server silent past OPENAI_READ_TIMEOUT_SECONDS is asked again while the call's
    deadline (OPENAI_TIMEOUT_SECONDS) still leaves time: the guest gets the model's answer."""
    container = await build_container(
        openai_timeout_seconds=4.0, openai_read_timeout_seconds=0.5, openai_max_retries=1
    )
    openai_emulator.fail_next(openai_api.Fault(delay=1.5))  # the first attempt stalls
    message_id = await receive(container, tenant, "Is there parking?")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    reply = await reply_row(admin, message_id)
    assert (reply["author"], reply["responder"]) == ("ai", "openai")
    assert len(openai_emulator.requests) == 2
    assert len(twilio_emulator.sent()) == 1


async def test_a_bad_key_sends_a_holding_message(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(openai_api_key="sk-bad")
    message_id = await receive(container, tenant, "Is there parking?")
    await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    reply = await reply_row(admin, message_id)
    assert reply["handoff_reason"] == "the assistant is unavailable (auth)"
    assert len(twilio_emulator.sent()) == 1


async def test_running_the_job_twice_sends_one_reply(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    message_id = await receive(container, tenant, "Is there parking?")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    again = await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert again == "already answered"
    assert len(twilio_emulator.sent()) == 1
    assert len(openai_emulator.requests) == 1
    assert (
        await admin.fetchval("SELECT count(*) FROM messages WHERE in_reply_to = $1", message_id)
        == 1
    )


async def test_two_jobs_at_once_send_one_reply(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    openai_emulator.fail_next(openai_api.Fault(delay=0.3))  # keep the first job busy
    message_id = await receive(container, tenant, "Is there parking?")
    results = await asyncio.gather(
        replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id),
        replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id),
        return_exceptions=True,
    )
    assert sorted(map(type, results), key=str) == sorted([str, TemporaryFailure], key=str)
    assert len(twilio_emulator.sent()) == 1
    assert len(openai_emulator.requests) == 1


async def claim_reply(container: Container, tenant: Tenant, message_id: int) -> ReplyClaimed:
    """Take the reply lease on `message_id` (30 s) as a job does first, as if about to answer."""
    claim = await container.store.claim_reply(
        tenant.hotel_id, message_id, lease_seconds=30, history_turns=5, max_attempts=5
    )
    assert isinstance(claim, ReplyClaimed)
    return claim


async def test_a_job_that_died_while_asking_the_model_is_redone_once(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    message_id = await receive(container, tenant, "Is there parking?")
    await claim_reply(container, tenant, message_id)
    # The worker dies here. Until the lease expires, another run waits instead of answering.
    with pytest.raises(TemporaryFailure):
        await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    await admin.execute("UPDATE messages SET reply_claimed_until = now() - interval '1 second'")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    assert len(twilio_emulator.sent()) == 1


async def test_a_slow_reply_renews_its_lease_so_no_second_job_answers(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    lease = 3.0
    container = await build_container(reply_lease_seconds=lease, openai_timeout_seconds=20.0)
    # About 7 s of streaming: more than twice the lease the job took when it started.
    openai_emulator.fail_next(openai_api.Fault(chunk_delay=0.8))
    message_id = await receive(container, tenant, "Is there parking?")
    first = asyncio.create_task(
        replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    )
    await wait_until(lambda: openai_emulator.requests, 10, "the model call")
    await asyncio.sleep(lease * 1.5)  # the first lease has run out; only renewals keep it
    assert await admin.fetchval(
        "SELECT reply_claimed_until > now() FROM messages WHERE id = $1", message_id
    )
    with pytest.raises(TemporaryFailure):
        await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert await first == "sent"
    assert len(openai_emulator.requests) == 1
    assert len(twilio_emulator.sent()) == 1
    row = await admin.fetchrow(
        "SELECT reply_state, reply_claimed_until FROM messages WHERE id = $1", message_id
    )
    assert row is not None and (row["reply_state"], row["reply_claimed_until"]) == (
        "answered",
        None,
    )


async def test_a_reply_stored_but_not_sent_is_sent_without_asking_the_model_again(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    message_id = await receive(container, tenant, "Is there parking?")
    claim = await claim_reply(container, tenant, message_id)
    draft = await replies.draft_reply(container.deps, tenant.hotel_id, claim.context)
    await container.store.store_reply(tenant.hotel_id, message_id, draft)
    asked = len(openai_emulator.requests)
    # The worker dies before sending; the re-run only sends.
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "sent"
    assert len(openai_emulator.requests) == asked
    assert [m.body for m in twilio_emulator.sent()] == [draft.body]


async def test_a_send_twilio_took_but_never_answered_is_not_sent_twice(
    build_container: Build, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    container = await build_container(twilio_timeout_seconds=0.5)
    twilio_emulator.fail_next(TwilioFault(accept=True, delay=1.5))
    message_id = await receive(container, tenant, "Is there parking?")
    with pytest.raises(TemporaryFailure):
        await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert len(twilio_emulator.sent()) == 1  # Twilio has it; we do not know that yet
    reply = await reply_row(admin, message_id)
    assert (reply["status"], reply["provider_sid"]) == ("pending", None)
    assert reply["send_attempted_at"] is not None
    assert (
        await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id) == "reconciled"
    )
    (sent,) = twilio_emulator.sent()
    assert (await reply_row(admin, message_id))["provider_sid"] == sent.sid


async def test_an_agent_taking_over_mid_answer_discards_the_ai_reply(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    message_id = await receive(container, tenant, "Is there parking?")
    claim = await claim_reply(container, tenant, message_id)
    draft = await replies.draft_reply(container.deps, tenant.hotel_id, claim.context)
    await admin.execute("UPDATE conversations SET state = 'agent'")
    result = await container.store.store_reply(tenant.hotel_id, message_id, draft)
    assert isinstance(result, ReplySkipped)
    assert await admin.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0
    assert twilio_emulator.sent() == []


async def test_a_newer_message_supersedes_an_unanswered_one(
    container: Container, tenant: Tenant, twilio_emulator: TwilioEmulator,
    openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    first = await receive(container, tenant, "Hi")
    second = await receive(container, tenant, "Is there parking?")
    outcome = await replies.reply_to_inbound(container.deps, tenant.hotel_id, first)
    assert outcome.startswith("skipped: a newer guest message")
    assert await replies.reply_to_inbound(container.deps, tenant.hotel_id, second) == "sent"
    assert len(twilio_emulator.sent()) == 1
    asked = [m["content"] for m in openai_emulator.requests[0]["messages"][1:]]
    assert asked == ["Hi", "Is there parking?"]


async def test_a_permanent_twilio_error_fails_the_message_and_hands_off(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    twilio_emulator.fail_next(TwilioFault(status=400, code=63016))
    message_id = await receive(container, tenant, "Is there parking?")
    outcome = await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert outcome == "failed: twilio_63016"
    reply = await reply_row(admin, message_id)
    assert (reply["status"], reply["error_code"]) == ("failed", "twilio_63016")
    assert reply["conversation_state"] == "needs_human"


async def test_twilio_outages_are_retried_a_bounded_number_of_times(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator,
) -> None:  # fmt: skip
    twilio_emulator.fail_next(TwilioFault(status=503, code=20503), times=100)
    message_id = await receive(container, tenant, "Is there parking?")
    deps = dataclasses.replace(container.deps, max_attempts=3)
    with pytest.raises(TemporaryFailure):
        await replies.reply_to_inbound(deps, tenant.hotel_id, message_id)
    reply_id = (await reply_row(admin, message_id))["id"]
    for _ in range(2):
        with pytest.raises(TemporaryFailure):
            await outbound.send_outbound(deps, tenant.hotel_id, reply_id)
    assert await outbound.send_outbound(deps, tenant.hotel_id, reply_id) == "already failed"
    reply = await reply_row(admin, message_id)
    assert (reply["status"], reply["error_code"], reply["attempts"]) == ("failed", "gave_up", 3)
    assert reply["conversation_state"] == "needs_human"
    assert twilio_emulator.requests == 3


async def test_replies_never_cross_hotels(
    container: Container, tenant: Tenant, other_tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    message_id = await receive(container, tenant, "Is there parking?")
    # A job naming the wrong hotel finds nothing: the message is invisible to hotel B.
    assert (
        await replies.reply_to_inbound(container.deps, other_tenant.hotel_id, message_id) == "gone"
    )
    await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    prompt = json.dumps(openai_emulator.requests[0])
    assert "Hotel B has free street parking" not in prompt
    assert twilio_emulator.sent()[0].from_ == f"whatsapp:{tenant.phone_number}"


async def test_store_reply_twice_keeps_the_first(
    container: Container, tenant: Tenant, admin: asyncpg.Connection
) -> None:
    from hotelchat.domain.model import Author, Responder

    message_id = await receive(container, tenant, "Hi")
    first = await container.store.store_reply(
        tenant.hotel_id, message_id, DraftReply("one", Author.AI, Responder.OPENAI, "en")
    )
    second = await container.store.store_reply(
        tenant.hotel_id, message_id, DraftReply("two", Author.AI, Responder.OPENAI, "en")
    )
    assert first == second
    assert (
        await admin.fetchval("SELECT body FROM messages WHERE in_reply_to = $1", message_id)
        == "one"
    )


async def test_a_hotel_can_choose_its_model(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    await admin.execute(
        "UPDATE hotels SET ai_model = 'gpt-4.1-mini' WHERE id = $1", tenant.hotel_id
    )
    message_id = await receive(container, tenant, "Is there parking?")
    await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert openai_emulator.requests[0]["model"] == "gpt-4.1-mini"
    assert (await reply_row(admin, message_id))["model"] == "gpt-4.1-mini"


async def test_a_hotel_with_the_assistant_off_goes_straight_to_staff(
    container: Container, tenant: Tenant, admin: asyncpg.Connection,
    twilio_emulator: TwilioEmulator, openai_emulator: OpenAIEmulator,
) -> None:  # fmt: skip
    await admin.execute("UPDATE hotels SET ai_enabled = false WHERE id = $1", tenant.hotel_id)
    message_id = await receive(container, tenant, "Is there parking?")
    outcome = await replies.reply_to_inbound(container.deps, tenant.hotel_id, message_id)
    assert outcome == "skipped: the assistant is switched off for this hotel"
    state = await admin.fetchval("SELECT state FROM conversations")
    assert state == "needs_human"
    assert twilio_emulator.sent() == [] and list(openai_emulator.requests) == []
