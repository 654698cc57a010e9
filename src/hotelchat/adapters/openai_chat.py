"""Chat completions through the official `openai` client, against OpenAI or any compatible server.

One `AsyncOpenAI` per process, with an explicit per-request timeout and retry count: the client's
own retries (429, 408, 409, 5xx, connection errors; `Retry-After` honoured) are the only retries
of a model call, so the job never stacks its own on top. Failures become `ModelError` with a
`kind` the reply service and the metrics understand.

Protocol facts: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/guides/error-codes (429 `insufficient_quota` is an exhausted
budget, not a passing limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.trace import Span, SpanKind

from hotelchat.domain.errors import ModelError
from hotelchat.observability import tracing
from hotelchat.services.ports import Completion, OnDelta, PromptMessage


def create_client(
    *, api_key: str, base_url: str | None, timeout: float, max_retries: int
) -> AsyncOpenAI:
    """The process's OpenAI client; `timeout` in seconds per request attempt."""
    return AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


def _message(message: PromptMessage) -> ChatCompletionMessageParam:
    return cast(ChatCompletionMessageParam, {"role": message.role, "content": message.content})


def classify(exc: openai.OpenAIError) -> str:
    """The `ModelError.kind` for an exception of the openai client."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "quota" if exc.code == "insufficient_quota" else "rate_limited"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else "bad_request"
    return "bad_response"


class OpenAIChatModel:
    """`services.ports.ChatModel` on `AsyncOpenAI.chat.completions`, always streamed: tokens
    reach `on_delta` as they arrive, and the whole answer is bounded by `total_timeout`
    seconds (the client's own timeout bounds each wait between chunks)."""

    def __init__(self, client: AsyncOpenAI, *, total_timeout: float) -> None:
        self._client = client
        self._total_timeout = total_timeout

    async def complete(
        self,
        *,
        model: str,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        """One streamed completion of at most `max_tokens` tokens. Raises `ModelError`; an
        exception from `on_delta` propagates unchanged and closes the stream."""
        attributes = {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
        }
        with tracing.span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            return await self._stream(span, model, messages, max_tokens, on_delta)

    async def _stream(
        self,
        span: Span,
        model: str,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        on_delta: OnDelta | None,
    ) -> Completion:
        started = time.monotonic()
        first: float | None = None
        pieces: list[str] = []
        usage: Any = None
        answered_by = model
        try:
            async with asyncio.timeout(self._total_timeout):
                stream = await self._client.chat.completions.create(
                    model=model,
                    messages=[_message(m) for m in messages],
                    max_completion_tokens=max_tokens,
                    temperature=0.2,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async with stream:
                    async for chunk in stream:
                        answered_by = chunk.model or answered_by
                        if chunk.usage is not None:
                            usage = chunk.usage
                        if not chunk.choices or not chunk.choices[0].delta.content:
                            continue
                        if first is None:
                            first = time.monotonic() - started
                        pieces.append(chunk.choices[0].delta.content)
                        if on_delta is not None:
                            await on_delta(chunk.choices[0].delta.content)
        except openai.OpenAIError as exc:
            kind = classify(exc)
            raise ModelError(f"the model failed: {type(exc).__name__}", kind=kind) from exc
        except TimeoutError as exc:
            raise ModelError("the model took too long", kind="timeout") from exc
        text = "".join(pieces).strip()
        if not text:
            raise ModelError("the model returned no text", kind="bad_response")
        span.set_attribute("gen_ai.response.model", answered_by)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        return Completion(
            text=text,
            model=answered_by,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            time_to_first_token=first,
            duration=time.monotonic() - started,
        )

    async def close(self) -> None:
        await self._client.close()
