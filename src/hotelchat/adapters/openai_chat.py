"""Chat completions through the official `openai` client, against OpenAI or any compatible server,
and the one retry budget every call to that API (chat and embeddings) spends.

The client is created with `max_retries=0`: `call_with_retries` is the only place a call is
tried again, so a job never stacks retries on retries, and a streamed answer is never started
twice once the guest may have seen part of it. Retried: dropped connections, timeouts, 408, 409,
429 and 5xx; never 429 `insufficient_quota` (an exhausted account), nor any other 4xx. The wait
is the server's `retry-after-ms` / `retry-after`, else exponential backoff with jitter, and a
call never outlives its total deadline. Failures become `ModelError` with a `kind` the reply
service and the metrics understand.

Protocol facts: https://platform.openai.com/docs/api-reference/chat/create ,
https://platform.openai.com/docs/guides/function-calling and
https://platform.openai.com/docs/guides/error-codes (429 `insufficient_quota` is an exhausted
budget, not a passing limit; `retry-after-ms` and `retry-after` as the openai client's own
`_base_client._parse_retry_after_header` reads them).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import openai
import structlog
from openai import AsyncOpenAI
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletionContentPartParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
    ChatCompletionUserMessageParam,
)
from opentelemetry.trace import SpanKind
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from hotelchat.domain.errors import ModelError
from hotelchat.observability import metrics, tracing
from hotelchat.services.ports import (
    Completion,
    OnDelta,
    PromptMessage,
    ToolCallRequest,
    ToolSpec,
)

T = TypeVar("T")
log = structlog.get_logger(__name__)

# Longest wait to open a connection: the openai client's own default (`DEFAULT_TIMEOUT`).
CONNECT_TIMEOUT = 5.0
# A retry must leave this share of the call's deadline for the attempt it makes.
_ATTEMPT_SHARE = 0.1


def create_client(*, api_key: str, base_url: str | None, timeout: float) -> AsyncOpenAI:
    """The process's OpenAI client. `timeout` in seconds bounds each wait of one attempt (for a
    streamed answer: the first chunk and every gap between chunks); connecting is bounded by
    at most `CONNECT_TIMEOUT`. The client retries nothing itself: see `call_with_retries`."""
    return AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        max_retries=0,
    )


def classify(exc: openai.OpenAIError) -> str:
    """The `ModelError.kind` (see `hotelchat.domain.errors.MODEL_ERROR_KINDS`) for an exception
    of the openai client. 408 is the server's timeout, 409 a lock on its side."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "quota" if exc.code == "insufficient_quota" else "rate_limited"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 408:
            return "timeout"
        if exc.status_code == 409 or exc.status_code >= 500:
            return "server_error"
        return "bad_request"
    return "bad_response"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts, in seconds: `first` doubling up to `most`, plus up to `first` of
    random jitter, unless the server says how long to wait. A server that asks for longer than
    `most_server_wait` is not retried at all (it will not serve us sooner)."""

    first: float = 0.5
    most: float = 8.0
    most_server_wait: float = 20.0


DEFAULT_BACKOFF = Backoff()


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """How long the server asks us to wait, in seconds: `retry-after-ms`, else `retry-after` as
    seconds or as an HTTP date (`now` is the Unix time to count from). None when absent,
    malformed or not in the future. https://www.rfc-editor.org/rfc/rfc9110#name-retry-after"""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if seconds > 0 else None
    value = headers.get("retry-after")
    if value is None:
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    return float(seconds) if seconds > 0 else None


def _retryable(exc: BaseException, backoff: Backoff) -> bool:
    """True when another attempt may succeed: the connection, a timeout, 408, 409, 429 (but not
    an exhausted quota) and 5xx, and the server asks for no longer a wait than we would make."""
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
        return True
    if not isinstance(exc, openai.APIStatusError) or classify(exc) == "quota":
        return False
    status = exc.status_code
    if status not in {408, 409, 429} and status < 500:
        return False
    asked = retry_after_seconds(exc.response.headers)
    return asked is None or asked <= backoff.most_server_wait


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    total_timeout: float,
    backoff: Backoff,
    operation: str,
    may_retry: Callable[[], bool] = lambda: True,
) -> T:
    """`await attempt()`, tried again (at most `max_retries` more times) when it raises an
    openai error that `_retryable` admits and `may_retry()` still allows (False once part of an
    answer was delivered). The whole call, attempts and waits, ends within `total_timeout`
    seconds: a wait that would leave the next attempt less than a tenth of that is not made,
    and the error stands. Each retry logs `openai.retry` (a warning) with its error class and
    wait; `operation` ("chat", "embeddings") names the call there.

    Raises `ModelError`: the last attempt's openai error, classified (`classify`), or kind
    "timeout" when the deadline passes during an attempt. Anything else `attempt` raises
    propagates unchanged, untried again."""
    base_wait = wait_exponential_jitter(
        multiplier=backoff.first, max=backoff.most, jitter=backoff.first
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        headers = exc.response.headers if isinstance(exc, openai.APIStatusError) else {}
        asked = retry_after_seconds(headers)
        return asked if asked is not None else base_wait(state)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        error_class = classify(exc) if isinstance(exc, openai.OpenAIError) else "unknown"
        metrics.AI_RETRIES.labels(operation, error_class).inc()
        log.warning(
            "openai.retry",
            operation=operation,
            error_class=error_class,
            status=exc.status_code if isinstance(exc, openai.APIStatusError) else None,
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 3),
        )

    retrying = AsyncRetrying(
        stop=(
            stop_after_attempt(max_retries + 1)
            | stop_before_delay(total_timeout * (1 - _ATTEMPT_SHARE))
        ),
        wait=wait,
        retry=retry_if_exception(lambda exc: may_retry() and _retryable(exc, backoff)),
        before_sleep=before_sleep,
        reraise=True,
    )

    async def once() -> T:  # tenacity awaits only what a coroutine function returns
        return await attempt()

    try:
        async with asyncio.timeout(total_timeout) as deadline:
            return await retrying(once)
    except openai.OpenAIError as exc:
        kind = classify(exc)
        raise ModelError(f"the {operation} call failed: {type(exc).__name__}", kind=kind) from exc
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise ModelError(f"the {operation} call took too long", kind="timeout") from exc


def _message(message: PromptMessage) -> ChatCompletionMessageParam:
    """`message` as the API's message params; an assistant message's calls as function calls."""
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        if message.images:
            # Content parts: https://platform.openai.com/docs/guides/images-vision
            parts: list[ChatCompletionContentPartParam] = [
                {"type": "text", "text": message.content}
            ]
            parts.extend({"type": "image_url", "image_url": {"url": u}} for u in message.images)
            user: ChatCompletionUserMessageParam = {"role": "user", "content": parts}
            return user
        return {"role": "user", "content": message.content}
    if message.role == "tool":
        if message.tool_call_id is None:
            raise ModelError(
                "a tool message needs the id of the call it answers", kind="bad_request"
            )
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    calls: list[ChatCompletionMessageFunctionToolCallParam] = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in message.tool_calls
    ]
    return {"role": "assistant", "content": message.content or None, "tool_calls": calls}


def _tool(spec: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": dict(spec.parameters),
        },
    }


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    """What one attempt received: text pieces, tool calls by their stream `index`, usage."""

    model: str
    started: float
    pieces: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    usage: CompletionUsage | None = None
    first: float | None = None  # seconds from the call's start to the first delta

    @property
    def delivered(self) -> bool:
        """True once any text or tool-call delta arrived: no retry may follow."""
        return self.first is not None

    def tool_calls(self) -> tuple[ToolCallRequest, ...]:
        calls = [self.calls[index] for index in sorted(self.calls)]
        if any(not call.id or not call.name for call in calls):
            raise ModelError(
                "the model sent a tool call without an id or name", kind="bad_response"
            )
        return tuple(ToolCallRequest(c.id, c.name, "".join(c.arguments)) for c in calls)


class OpenAIChatModel:
    """`services.ports.ChatModel` on `AsyncOpenAI.chat.completions`, always streamed: text
    reaches `on_delta` as it arrives, tool calls are reassembled from their deltas, and the
    whole call, retries and waits included, is bounded by `total_timeout` seconds (the client's
    own timeout bounds each wait of one attempt). At most `max_retries` retries, and none once
    a delta has arrived."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        total_timeout: float,
        max_retries: int,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self._client = client
        self._total_timeout = total_timeout
        self._max_retries = max_retries
        self._backoff = backoff

    async def complete(
        self,
        *,
        model: str,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        on_delta: OnDelta | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: Literal["auto", "none"] = "auto",
    ) -> Completion:
        """One streamed completion of at most `max_tokens` tokens, offering `tools` (with
        `tool_choice`) when there are any. Raises `ModelError` (a stream that fails after a
        delta was delivered too: the caller withdraws what was shown); an exception from
        `on_delta` propagates unchanged and closes the stream."""
        attributes = {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
        }
        with tracing.span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            started = time.monotonic()
            params = [_message(m) for m in messages]
            answers: list[_Answer] = []

            async def attempt() -> _Answer:
                answers.append(_Answer(model=model, started=started))
                await self._stream(
                    answers[-1], model, params, max_tokens, on_delta, tools, tool_choice
                )
                return answers[-1]

            answer = await call_with_retries(
                attempt,
                max_retries=self._max_retries,
                total_timeout=self._total_timeout,
                backoff=self._backoff,
                operation="chat",
                may_retry=lambda: not answers[-1].delivered,
            )
            text = "".join(answer.pieces).strip()
            calls = answer.tool_calls()
            if not text and not calls:
                raise ModelError(
                    "the model returned neither text nor a tool call", kind="bad_response"
                )
            span.set_attribute("gen_ai.response.model", answer.model)
            usage = answer.usage
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            return Completion(
                text=text,
                model=answer.model,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                time_to_first_token=answer.first,
                duration=time.monotonic() - started,
                tool_calls=calls,
            )

    async def _stream(
        self,
        answer: _Answer,
        model: str,
        messages: list[ChatCompletionMessageParam],
        max_tokens: int,
        on_delta: OnDelta | None,
        tools: Sequence[ToolSpec],
        tool_choice: Literal["auto", "none"],
    ) -> None:
        """One attempt: read the stream into `answer`, text pieces to `on_delta` as they come."""
        stream = await self._client.chat.completions.create(
            model=model,
            messages=messages,
            max_completion_tokens=max_tokens,
            temperature=0.2,
            stream=True,
            stream_options={"include_usage": True},
            tools=[_tool(spec) for spec in tools] if tools else openai.omit,
            tool_choice=tool_choice if tools else openai.omit,
        )
        async with stream:
            async for chunk in stream:
                answer.model = chunk.model or answer.model
                if chunk.usage is not None:
                    answer.usage = chunk.usage
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if not delta.content and not delta.tool_calls:
                    continue
                if answer.first is None:
                    answer.first = time.monotonic() - answer.started
                for piece in delta.tool_calls or ():
                    call = answer.calls.setdefault(piece.index, _PartialCall())
                    # OpenAI names a call once; some compatible servers repeat the id and name.
                    call.id = call.id or piece.id or ""
                    if piece.function is not None:
                        call.name = call.name or piece.function.name or ""
                        if piece.function.arguments:
                            call.arguments.append(piece.function.arguments)
                if delta.content:
                    answer.pieces.append(delta.content)
                    if on_delta is not None:
                        await on_delta(delta.content)

    async def close(self) -> None:
        await self._client.close()
