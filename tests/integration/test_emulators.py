"""The emulators speak the real wire format: the official `openai` and `twilio` clients, unpatched,
parse everything they send, including streams, errors, retries, tool calls and embeddings.

The embeddings are real multilingual-e5 vectors, so retrieval tests measure what production does.
https://platform.openai.com/docs/api-reference/embeddings/create ;
https://platform.openai.com/docs/guides/function-calling
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from hotelchat.adapters.twilio import RoutedHttpClient, TwilioWhatsApp
from hotelchat.domain.errors import SendError
from hotelchat.domain.model import DeliveryStatus, SenderRoute
from hotelchat.emulators import openai_api
from hotelchat.emulators.openai_api import OpenAIEmulator, ToolCall
from hotelchat.emulators.twilio_api import Fault, TwilioEmulator
from tests.conftest import OPENAI_KEY

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Hotel facts:\n[1] Parking: Parking is EUR 18 a day."},
    {"role": "user", "content": "Is there parking?"},
]


@pytest.fixture
async def client(openai_emulator: OpenAIEmulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=OPENAI_KEY, base_url=openai_emulator.url + "/v1", timeout=2, max_retries=1
    ) as c:
        yield c


async def test_a_completion(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content == "Parking is EUR 18 a day."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.total_tokens > 0


async def test_a_streamed_completion_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(pieces) > 3, "streamed token by token"
    assert "".join(pieces) == "Parking is EUR 18 a day."
    assert usage is not None and usage.completion_tokens > 0


async def test_a_paced_stream_takes_the_model_time_it_is_told(
    client: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    """Time to first token and tokens per second, as load tests set them: lower bounds only
    (a busy machine is slower, never faster)."""
    openai_emulator.time_to_first_token, openai_emulator.tokens_per_second = 0.3, 20.0
    try:
        started = time.monotonic()
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        arrivals: list[float] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
        assert arrivals[0] >= 0.3
        assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / 20.0 * 0.95
        started = time.monotonic()
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert time.monotonic() - started >= 0.3 + (len(arrivals) - 1) / 20.0
    finally:
        openai_emulator.time_to_first_token, openai_emulator.tokens_per_second = 0.0, None


def test_a_negative_model_time_is_refused() -> None:
    with pytest.raises(ValueError, match="time_to_first_token"):
        OpenAIEmulator(time_to_first_token=-1)
    with pytest.raises(ValueError, match="tokens_per_second"):
        OpenAIEmulator(tokens_per_second=0)


async def test_a_stream_cut_midway_raises(
    client: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(openai_api.Fault(break_stream_after=2))
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
    )
    received: list[str] = []

    async def read_all() -> None:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIConnectionError):
        await read_all()
    assert len(received) == 2


async def test_a_rate_limit_is_retried_after_retry_after_ms(
    client: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(openai_api.RATE_LIMITED)
    response = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content
    assert len(openai_emulator.requests) == 2


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (openai_api.BAD_KEY, openai.AuthenticationError, "invalid_api_key"),
        (openai_api.QUOTA_EXCEEDED, openai.RateLimitError, "insufficient_quota"),
        (openai_api.SERVER_ERROR, openai.InternalServerError, None),
    ],
)
async def test_errors_arrive_as_the_client_s_own_classes(
    client: openai.AsyncOpenAI,
    openai_emulator: OpenAIEmulator,
    fault: openai_api.Fault,
    error: type[openai.APIStatusError],
    code: str | None,
) -> None:
    openai_emulator.fail_next(fault, times=2)
    with pytest.raises(error) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == code


async def test_a_bad_request_body_is_400(openai_emulator: OpenAIEmulator) -> None:
    async with openai.AsyncOpenAI(
        api_key=OPENAI_KEY, base_url=openai_emulator.url + "/v1", max_retries=0
    ) as c:
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="gpt-4o-mini", messages=[])


# --- Embeddings ----------------------------------------------------------------------------------

PARKING = "Parking: Underground parking costs EUR 18 per day."
BREAKFAST = "Breakfast: Breakfast is served from 7:00 to 10:30 in the restaurant."


@pytest.fixture
async def embedder(openai_emulator: OpenAIEmulator) -> AsyncIterator[openai.AsyncOpenAI]:
    """A client with time for the first call, which loads the e5 model, and no retries."""
    async with openai.AsyncOpenAI(
        api_key=OPENAI_KEY, base_url=openai_emulator.url + "/v1", timeout=30, max_retries=0
    ) as c:
        yield c


def dot(a: list[float], b: list[float]) -> float:
    """The cosine similarity of unit vectors."""
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_are_the_same_unit_vectors_as_base64_and_as_floats(
    embedder: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    texts = [PARKING, "Frühstück gibt es von 7 bis 10:30 Uhr."]
    default = await embedder.embeddings.create(model="e5-passage", input=texts)
    floats = await embedder.embeddings.create(
        model="e5-passage", input=texts, encoding_format="float"
    )
    explicit = await embedder.embeddings.create(
        model="e5-passage", input=texts, encoding_format="base64"
    )
    # Unless told otherwise, the client asks for base64 and decodes it itself.
    asked = [r["encoding_format"] for r in openai_emulator.embedding_requests]
    assert asked == ["base64", "float", "base64"]
    assert list(openai_emulator.requests) == [], "chat requests are recorded apart"
    assert [item.index for item in default.data] == [0, 1]
    assert default.model == "e5-passage"
    assert default.usage.prompt_tokens == default.usage.total_tokens > 0
    for decoded, plain, raw in zip(default.data, floats.data, explicit.data, strict=True):
        assert len(decoded.embedding) == 384
        assert decoded.embedding == plain.embedding
        assert math.isclose(dot(plain.embedding, plain.embedding), 1.0, rel_tol=1e-5)
        # Asked for explicitly, base64 is left undecoded, despite the `list[float]` type.
        encoded = cast(object, raw.embedding)
        assert isinstance(encoded, str)
        assert list(struct.unpack("<384f", base64.b64decode(encoded))) == plain.embedding
    assert dot(default.data[0].embedding, default.data[1].embedding) < 0.99


@pytest.mark.parametrize("question", ["is there parking?", "hay parking?"])
async def test_a_question_is_closest_to_the_passage_that_answers_it(
    embedder: openai.AsyncOpenAI, question: str
) -> None:
    passages = await embedder.embeddings.create(model="e5-passage", input=[PARKING, BREAKFAST])
    query = await embedder.embeddings.create(model="e5-query", input=question)
    parking, breakfast = (item.embedding for item in passages.data)
    asked = query.data[0].embedding
    assert dot(asked, parking) > dot(asked, breakfast) + 0.03
    # The role comes from the model name: a passage is embedded differently, and a query is
    # what a name that says neither gets.
    as_passage = await embedder.embeddings.create(model="e5-passage", input=question)
    as_default = await embedder.embeddings.create(model="text-embedding-3-small", input=question)
    assert as_passage.data[0].embedding != asked
    assert as_default.data[0].embedding == asked


@pytest.mark.parametrize(
    ("given", "param"),
    [
        ("", "input[0]"),
        ([], "input"),
        (["Parking?", ""], "input[1]"),
        (["Parking?"] * 2049, "input"),
        (["x" * 8193], "input[0]"),
        ([1, 2, 3], "input"),
        ([[1, 2], [3]], "input"),
    ],
    ids=["empty", "none", "an-empty-item", "too-many", "too-long", "tokens", "token-arrays"],
)
async def test_bad_embedding_inputs_are_400(
    embedder: openai.AsyncOpenAI,
    openai_emulator: OpenAIEmulator,
    given: str | list[str] | list[int] | list[list[int]],
    param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await embedder.embeddings.create(model="e5-query", input=given)
    assert (caught.value.type, caught.value.param) == ("invalid_request_error", param)
    assert list(openai_emulator.embedding_requests) == []


async def test_embeddings_cannot_be_shortened(embedder: openai.AsyncOpenAI) -> None:
    full = await embedder.embeddings.create(model="e5-query", input="Wi-Fi?", dimensions=384)
    assert len(full.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as caught:
        await embedder.embeddings.create(model="e5-query", input="Wi-Fi?", dimensions=256)
    assert caught.value.param == "dimensions"


async def test_embeddings_with_a_bad_key_are_refused(openai_emulator: OpenAIEmulator) -> None:
    async with openai.AsyncOpenAI(
        api_key="sk-bad", base_url=openai_emulator.url + "/v1", max_retries=0
    ) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            await c.embeddings.create(model="e5-query", input="Parking?")
    assert caught.value.code == "invalid_api_key"
    assert list(openai_emulator.embedding_requests) == []


async def test_faults_can_aim_at_embeddings(
    client: openai.AsyncOpenAI, embedder: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.fail_next(openai_api.SERVER_ERROR, endpoint="embeddings")
    response = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content == "Parking is EUR 18 a day."
    with pytest.raises(openai.InternalServerError):
        await embedder.embeddings.create(model="e5-query", input="Parking?")
    openai_emulator.fail_next(openai_api.RATE_LIMITED)  # for any endpoint: the next request
    with pytest.raises(openai.RateLimitError):
        await embedder.embeddings.create(model="e5-query", input="Parking?")
    assert len(openai_emulator.embedding_requests) == 2
    assert len(openai_emulator.requests) == 1


# --- Tool calls ----------------------------------------------------------------------------------

TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "book_taxi",
            "description": "Book a taxi for the guest.",
            "parameters": {
                "type": "object",
                "properties": {"pickup": {"type": "string"}, "destination": {"type": "string"}},
                "required": ["pickup", "destination"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "ask_front_desk",
            "description": "Pass a question to the hotel team.",
            "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
        },
    },
]
TAXI = ToolCall("book_taxi", {"pickup": "07:30", "destination": "Aeropuerto Madrid-Barajas T4"})
DESK = ToolCall("ask_front_desk", {"question": "¿Se admiten perros?", "urgent": False})
TAXI_CHAT: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are the concierge of Hotel A."},
    {"role": "user", "content": "Necesito un taxi al aeropuerto a las 7:30."},
]


@dataclass
class Assembled:
    """Tool calls as a caller sees them, from a completion or put together from a stream."""

    calls: list[tuple[str, str, dict[str, Any]]]  # id, name, arguments
    finish: str | None
    usage: CompletionUsage | None = None
    argument_pieces: int = 0
    roles: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, completion: ChatCompletion) -> Assembled:
        choice = completion.choices[0]
        assert choice.message.content is None
        calls = []
        for call in choice.message.tool_calls or []:
            assert isinstance(call, ChatCompletionMessageFunctionToolCall)
            assert call.type == "function"
            calls.append((call.id, call.function.name, json.loads(call.function.arguments)))
        return cls(calls, choice.finish_reason, completion.usage)

    @classmethod
    async def read(cls, stream: openai.AsyncStream[ChatCompletionChunk]) -> Assembled:
        parts: dict[int, dict[str, str]] = {}
        assembled = cls([], None)
        async for chunk in stream:
            if chunk.usage is not None:
                assembled.usage = chunk.usage
            for choice in chunk.choices:
                assembled.finish = choice.finish_reason or assembled.finish
                if choice.delta.role is not None:
                    assembled.roles.append(choice.delta.role)
                assert not choice.delta.content
                for delta in choice.delta.tool_calls or []:
                    part = parts.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    if delta.id is not None:
                        assert not part["id"] and delta.type == "function"
                        part["id"] = delta.id
                    if delta.function is not None:
                        part["name"] += delta.function.name or ""
                        part["arguments"] += delta.function.arguments or ""
                        assembled.argument_pieces += bool(delta.function.arguments)
        assembled.calls = [
            (p["id"], p["name"], json.loads(p["arguments"])) for _, p in sorted(parts.items())
        ]
        return assembled


async def ask_with_tools(client: openai.AsyncOpenAI, *, stream: bool, **extra: Any) -> Assembled:
    if stream:
        chunks = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=TAXI_CHAT,
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
            **extra,
        )
        return await Assembled.read(chunks)
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=TAXI_CHAT, tools=TOOLS, **extra
    )
    return Assembled.of(completion)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
async def test_a_tool_call(
    client: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator, stream: bool
) -> None:
    openai_emulator.answer_next(TAXI)
    got = await ask_with_tools(client, stream=stream, tool_choice="auto")
    ((call_id, name, arguments),) = got.calls
    assert call_id.startswith("call_") and len(call_id) > 10
    assert (name, arguments) == ("book_taxi", TAXI.arguments)
    assert got.finish == "tool_calls"
    assert got.usage is not None and got.usage.completion_tokens > 0
    if stream:
        assert got.roles == ["assistant"]
        assert got.argument_pieces > 3, "the arguments are streamed piece by piece"
    assert openai_emulator.requests[0]["tools"] == TOOLS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
async def test_parallel_tool_calls(
    client: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator, stream: bool
) -> None:
    openai_emulator.answer_next([TAXI, DESK])
    got = await ask_with_tools(client, stream=stream)
    assert [(name, arguments) for _, name, arguments in got.calls] == [
        ("book_taxi", TAXI.arguments),
        ("ask_front_desk", DESK.arguments),
    ]
    assert len({call_id for call_id, _, _ in got.calls}) == 2
    assert got.finish == "tool_calls"


async def test_a_tool_round_trip(
    client: openai.AsyncOpenAI, openai_emulator: OpenAIEmulator
) -> None:
    openai_emulator.answer_next(TAXI, "Your taxi to the airport is booked for 7:30.")
    messages = list(TAXI_CHAT)
    first = await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=TOOLS
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append(
        {"role": "tool", "tool_call_id": call.id, "content": '{"booked": true, "ref": "TX-42"}'}
    )
    second = await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=TOOLS
    )
    assert second.choices[0].message.content == "Your taxi to the airport is booked for 7:30."
    assert second.choices[0].finish_reason == "stop"
    asked = openai_emulator.requests[1]["messages"]
    assert asked[-2]["tool_calls"][0]["id"] == asked[-1]["tool_call_id"] == call.id


@pytest.mark.parametrize(
    ("answer", "extra", "why"),
    [
        (TAXI, {}, "without 'tools'"),
        (ToolCall("open_door"), {"tools": TOOLS}, "not one of the request's 'tools'"),
        (TAXI, {"tools": TOOLS, "tool_choice": "none"}, "'tool_choice': 'none'"),
        ([TAXI, DESK], {"tools": TOOLS, "parallel_tool_calls": False}, "parallel"),
        ("Sure.", {"tools": TOOLS, "tool_choice": "required"}, "demands a tool call"),
    ],
    ids=["no-tools", "unknown-tool", "choice-none", "not-parallel", "required-but-text"],
)
async def test_an_impossible_scripted_answer_is_400(
    client: openai.AsyncOpenAI,
    openai_emulator: OpenAIEmulator,
    answer: str | ToolCall | list[ToolCall],
    extra: dict[str, Any],
    why: str,
) -> None:
    openai_emulator.answer_next(answer)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=TAXI_CHAT, **extra)
    assert why in caught.value.message


ASKED_TAXI: ChatCompletionMessageParam = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_taxi",
            "type": "function",
            "function": {"name": "book_taxi", "arguments": TAXI.json_arguments()},
        }
    ],
}
USER: ChatCompletionMessageParam = {"role": "user", "content": "Thanks!"}


def tool_result(call_id: str) -> ChatCompletionMessageParam:
    return {"role": "tool", "tool_call_id": call_id, "content": "booked"}


@pytest.mark.parametrize(
    ("conversation", "param"),
    [
        ([USER, ASKED_TAXI, tool_result("call_other")], "messages.[2].tool_call_id"),
        ([USER, tool_result("call_taxi")], "messages.[1].role"),
        ([USER, ASKED_TAXI, USER], "messages.[1].role"),
        ([USER, ASKED_TAXI], "messages.[1].role"),
        ([USER, ASKED_TAXI, tool_result("call_taxi"), USER, tool_result("call_taxi")],
         "messages.[4].role"),
    ],
    ids=["unknown-id", "no-call-before", "unanswered", "unanswered-at-the-end", "answered-late"],
)  # fmt: skip
async def test_tool_messages_must_answer_the_calls_before_them(
    client: openai.AsyncOpenAI,
    openai_emulator: OpenAIEmulator,
    conversation: list[ChatCompletionMessageParam],
    param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=conversation, tools=TOOLS
        )
    assert (caught.value.type, caught.value.param) == ("invalid_request_error", param)
    assert list(openai_emulator.requests) == [], "refused before reaching the model"


async def test_tool_choice_without_tools_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=TAXI_CHAT, tool_choice="auto"
        )
    assert caught.value.param == "tool_choice"


ROUTE = SenderRoute(
    hotel_id=1, sender_id=1, phone_number="+15550000001",
    account_sid="AC" + "1" * 32, auth_token="t" * 32,
)  # fmt: skip


@pytest.fixture
async def whatsapp(twilio_emulator: TwilioEmulator) -> AsyncIterator[TwilioWhatsApp]:
    http = RoutedHttpClient(timeout=2, base_url=twilio_emulator.url)
    yield TwilioWhatsApp(http, rate_limit_retries=2, rate_limit_backoff_seconds=0.05)
    await http.close()


async def test_twilio_send_list_and_find(
    whatsapp: TwilioWhatsApp, twilio_emulator: TwilioEmulator
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    sent = await whatsapp.send(ROUTE, to_number="+15551234567", body="Hello", status_callback=None)
    assert sent.sid.startswith("SM") and sent.status is DeliveryStatus.QUEUED
    found = await whatsapp.find_sent(ROUTE, to_number="+15551234567", body="Hello", since=before)
    assert found == sent
    assert (
        await whatsapp.find_sent(ROUTE, to_number="+15551234567", body="Other", since=before)
        is None
    )
    assert twilio_emulator.sent()[0].auth_token == ROUTE.auth_token


@pytest.mark.parametrize(
    ("fault", "retryable", "code"),
    [
        (Fault(status=400, code=21211), False, 21211),
        (Fault(status=400, code=63016), False, 63016),
        (Fault(status=429, code=20429), True, 20429),
        (Fault(status=503, code=20503), True, 20503),
    ],
)
async def test_twilio_errors_become_send_errors(
    whatsapp: TwilioWhatsApp,
    twilio_emulator: TwilioEmulator,
    fault: Fault,
    retryable: bool,
    code: int,
) -> None:
    # Persistent: a 429 is retried twice here (bounded), then surfaces like the others.
    twilio_emulator.fail_next(fault, times=3)
    with pytest.raises(SendError) as caught:
        await whatsapp.send(ROUTE, to_number="+15551234567", body="Hi", status_callback=None)
    assert (caught.value.retryable, caught.value.provider_code) == (retryable, code)
    assert not caught.value.maybe_sent
    assert twilio_emulator.requests == (3 if fault.status == 429 else 1)


async def test_a_twilio_timeout_may_have_sent(
    twilio_emulator: TwilioEmulator,
) -> None:
    http = RoutedHttpClient(timeout=0.3, base_url=twilio_emulator.url)
    twilio_emulator.fail_next(Fault(accept=True, delay=2))
    try:
        with pytest.raises(SendError) as caught:
            await TwilioWhatsApp(http).send(
                ROUTE, to_number="+15551234567", body="Hi", status_callback=None
            )
        assert caught.value.retryable and caught.value.maybe_sent
    finally:
        await http.close()


async def test_wrong_twilio_credentials_are_refused(whatsapp: TwilioWhatsApp) -> None:
    route = SenderRoute(1, 1, "+15550000001", "AC" + "1" * 32, "")
    with pytest.raises(SendError) as caught:
        await whatsapp.send(route, to_number="+15551234567", body="Hi", status_callback=None)
    assert (caught.value.status, caught.value.provider_code) == (401, 20003)
