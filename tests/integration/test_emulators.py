"""The emulators speak the real wire format: the official `openai` and `twilio` clients, unpatched,
parse everything they send, including streams, errors and retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from hotelchat.adapters.twilio import RoutedHttpClient, TwilioWhatsApp
from hotelchat.domain.errors import SendError
from hotelchat.domain.model import DeliveryStatus, SenderRoute
from hotelchat.emulators import openai_api
from hotelchat.emulators.openai_api import OpenAIEmulator
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


ROUTE = SenderRoute(
    hotel_id=1, sender_id=1, phone_number="+15550000001",
    account_sid="AC" + "1" * 32, auth_token="t" * 32,
)  # fmt: skip


@pytest.fixture
async def whatsapp(twilio_emulator: TwilioEmulator) -> AsyncIterator[TwilioWhatsApp]:
    http = RoutedHttpClient(timeout=2, base_url=twilio_emulator.url)
    yield TwilioWhatsApp(http)
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
    twilio_emulator.fail_next(fault)
    with pytest.raises(SendError) as caught:
        await whatsapp.send(ROUTE, to_number="+15551234567", body="Hi", status_callback=None)
    assert (caught.value.retryable, caught.value.provider_code) == (retryable, code)
    assert not caught.value.maybe_sent


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
