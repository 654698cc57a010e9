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

from collections.abc import Sequence

import openai
from openai import AsyncOpenAI

from hotelchat.domain.errors import ModelError
from hotelchat.services.ports import Completion, PromptMessage


def create_client(
    *, api_key: str, base_url: str | None, timeout: float, max_retries: int
) -> AsyncOpenAI:
    """The process's OpenAI client; `timeout` in seconds per request attempt."""
    return AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


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
    """`services.ports.ChatModel` on `AsyncOpenAI.chat.completions`."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def complete(
        self, *, model: str, messages: Sequence[PromptMessage], max_tokens: int
    ) -> Completion:
        """One completion of at most `max_tokens` tokens. Raises `ModelError`."""
        try:
            response = await self._client.chat.completions.create(
                model=model,
                messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                max_completion_tokens=max_tokens,
                temperature=0.2,
            )
        except openai.OpenAIError as exc:
            kind = classify(exc)
            raise ModelError(f"the model failed: {type(exc).__name__}", kind=kind) from exc
        if not response.choices or not response.choices[0].message.content:
            raise ModelError("the model returned no text", kind="bad_response")
        usage = response.usage
        return Completion(
            text=response.choices[0].message.content.strip(),
            model=response.model or model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    async def close(self) -> None:
        await self._client.close()
