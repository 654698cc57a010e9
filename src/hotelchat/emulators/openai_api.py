"""A small OpenAI API emulator on loopback, for tests and load tests: the official `openai`
client is pointed at it with `base_url`, so every byte goes through the client's real code.

Wire format, as documented at https://platform.openai.com/docs/api-reference/chat/create:
- `POST /v1/chat/completions`, JSON in and out; with `"stream": true`, server-sent events of
  `chat.completion.chunk` objects ending in `data: [DONE]` (a usage chunk first when
  `stream_options.include_usage` is set).
- Errors as `{"error": {"message", "type", "param", "code"}}` with the real statuses: 401
  `invalid_api_key`, 429 `rate_limit_exceeded` (with `retry-after-ms`) or `insufficient_quota`,
  500 `server_error`. https://platform.openai.com/docs/guides/error-codes
- `GET /v1/models`.

Its default answer is grounded the way a good model's would be: the first hotel fact in the
system prompt, or "I will ask the team" when there is none. Tests queue their own answers with
`answer_next` and failures with `fail_next`, and read what was asked in `requests`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

NO_ANSWER = "I don't have that information; I will ask the hotel team for you."
_FIRST_FACT = re.compile(r"^\[1\] [^:\n]+: (.+)$", re.MULTILINE)


@dataclass
class Fault:
    """What to do to one upcoming request instead of answering.

    `status` with `code` and `error_type`: answer with that error (and `retry_after_ms`).
    `delay`: wait this many seconds first (longer than the client's timeout = a timeout).
    `break_stream_after`: stream this many content chunks, then drop the connection.
    `chunk_delay`: seconds between streamed chunks (a slow model).
    """

    status: int | None = None
    code: str | None = None
    error_type: str | None = None
    delay: float = 0.0
    retry_after_ms: int | None = None
    break_stream_after: int | None = None
    chunk_delay: float = 0.0


RATE_LIMITED = Fault(
    status=429, code="rate_limit_exceeded", error_type="requests", retry_after_ms=10
)
QUOTA_EXCEEDED = Fault(status=429, code="insufficient_quota", error_type="insufficient_quota")
SERVER_ERROR = Fault(status=500, code=None, error_type="server_error")
BAD_KEY = Fault(status=401, code="invalid_api_key", error_type="invalid_request_error")


def count_tokens(text: str) -> int:
    """A rough token count (about four characters a token), enough for usage figures."""
    return max(1, len(text) // 4)


def default_answer(messages: list[dict[str, Any]]) -> str:
    """The first hotel fact of the system prompt, or `NO_ANSWER`."""
    system = next((m for m in messages if m.get("role") == "system"), None)
    if system is not None:
        match = _FIRST_FACT.search(str(system.get("content", "")))
        if match:
            return match.group(1).strip()
    return NO_ANSWER


def _error(fault: Fault) -> web.Response:
    assert fault.status is not None
    messages = {
        401: "Incorrect API key provided.",
        429: "Rate limit reached for requests"
        if fault.code != "insufficient_quota"
        else "You exceeded your current quota, please check your plan and billing details.",
        500: "The server had an error while processing your request.",
    }
    headers = {"x-request-id": "req_" + secrets.token_hex(8)}
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    body = {
        "error": {
            "message": messages.get(fault.status, "Emulated error"),
            "type": fault.error_type,
            "param": None,
            "code": fault.code,
        }
    }
    return web.json_response(body, status=fault.status, headers=headers)


class OpenAIEmulator:
    """State and aiohttp application of the emulator; thread-safe controls for tests."""

    def __init__(self, *, bad_keys: frozenset[str] = frozenset({"sk-bad"})) -> None:
        self.bad_keys = bad_keys
        self.url = ""  # set by whoever serves it
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._answers: collections.deque[str] = collections.deque(maxlen=100)
        self._faults: collections.deque[Fault] = collections.deque(maxlen=100)
        self._lock = threading.Lock()

    def answer_next(self, *answers: str) -> None:
        """Answer the next requests with these texts, in order."""
        with self._lock:
            self._answers.extend(answers)

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to the next `times` requests."""
        with self._lock:
            self._faults.extend([fault] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._answers.clear()
            self._faults.clear()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        key = header.removeprefix("Bearer ").strip()
        return header.startswith("Bearer ") and bool(key) and key not in self.bad_keys

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(BAD_KEY)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "emulator"}
                ],
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return _error(BAD_KEY)
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response(
                {
                    "error": {
                        "message": "We could not parse the JSON body of your request.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
                status=400,
            )
        messages = payload.get("messages")
        if (
            not isinstance(payload.get("model"), str)
            or not isinstance(messages, list)
            or not messages
        ):
            return web.json_response(
                {
                    "error": {
                        "message": "'model' and 'messages' are required properties",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": None,
                    }
                },
                status=400,
            )
        with self._lock:
            self.requests.append(payload)
            fault = self._faults.popleft() if self._faults else None
            answer = self._answers.popleft() if self._answers else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            return _error(fault)
        text = answer if answer is not None else default_answer(messages)
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = count_tokens(text)
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        model = payload["model"]
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            return await self._stream(
                request, text, completion_id, created, model,
                usage=(prompt_tokens, completion_tokens) if include_usage else None,
                break_after=fault.break_stream_after if fault else None,
                chunk_delay=fault.chunk_delay if fault else 0.0,
            )  # fmt: skip
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "fp_emulator",
            }
        )

    async def _stream(
        self,
        request: web.Request,
        text: str,
        completion_id: str,
        created: int,
        model: str,
        *,
        usage: tuple[int, int] | None,
        break_after: int | None,
        chunk_delay: float = 0.0,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_emulator",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": ""}, None))
        pieces = re.findall(r"\S+\s*", text) or [text]
        for index, piece in enumerate(pieces):
            if break_after is not None and index >= break_after:
                # Drop the connection mid-stream, as a failing upstream does.
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk({"content": piece}, None))
            await asyncio.sleep(chunk_delay)
        await response.write(chunk({}, "stop"))
        if usage is not None:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": usage[0] + usage[1],
                },
            }
            await response.write(f"data: {json.dumps(body)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
