"""A small Twilio REST API emulator for WhatsApp messages, on loopback: what `hotelchat dev` sends
to instead of Twilio, and what tests point the official Twilio SDK at.

It speaks the wire format of the real API for the parts HotelChat uses:
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form-encoded; 201 with the Message
  resource; Twilio's JSON errors such as 21604, 21602, 21617, 20003),
- `GET .../Messages.json` (newest first, `To`/`From` filters, `PageSize`, Twilio's paging keys),
- `GET .../Messages/{Sid}.json`,
- status callbacks (`queued` -> `sent` -> `delivered` -> `read`) POSTed to the message's
  `StatusCallback`, form-encoded and signed with X-Twilio-Signature like Twilio's.
- media of inbound messages (`add_media`): `GET .../Messages/{Sid}/Media/{MediaSid}` answers the
  file to HTTP Basic with that account's SID and auth token only (401 otherwise, 404 once
  deleted), and `DELETE .../Media/{MediaSid}.json` deletes it (204), as
  https://www.twilio.com/docs/messaging/api/media-resource describes;
- `MediaUrl` on a create: each URL is fetched (GET, as Twilio does to check its Content-Type,
  https://www.twilio.com/docs/messaging/guides/accepted-mime-types); what came back is kept on
  the message (`EmulatedMessage.media`), and a URL that does not answer 200 fails the message
  with error 11200 (HTTP retrieval failure).
https://www.twilio.com/docs/messaging/api/message-resource
- templates: `GET /v1/ContentAndApprovals` and `GET /v1/Content` (the Content API's paging:
  `meta` with `key`, `next_page_url`; PageSize, Page, PageToken), and sends with `ContentSid` +
  `ContentVariables` instead of `Body`, rendered from the registered content (21655 for an
  unknown ContentSid, 21656 for bad variables, 21654 for variables without a ContentSid).
  https://www.twilio.com/docs/content/content-api-resources
- the 24-hour window, when `enforce_window` is on: a free-form `Body` to a guest who has not
  written within 24 hours (as told by `guest_wrote`) is refused with 63016
  (https://www.twilio.com/docs/api/errors/63016); `Fault(async_error=63016)` instead accepts the
  message and reports it `failed` with that ErrorCode in a status callback.

Credentials: HTTP Basic with the Account SID and its auth token, as the SDK sends them; any
non-empty token is accepted (the emulator has no account database) and is used to sign that
message's callbacks, which is what Twilio does with the real token.

Tests script failures with `fail_next(...)` (e.g. `Fault(status=429, code=20429)`: Twilio's "Too
Many Requests", https://www.twilio.com/docs/api/errors/20429, with its JSON error body);
`create_times` holds when each create request arrived (monotonic seconds), for pacing tests;
`GET /_emulator/messages` lists what was sent, for people and for `hotelchat simulate`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from hotelchat.adapters.twilio import sign

log = structlog.get_logger(__name__)

API = "/2010-04-01"
MAX_MESSAGES = 10_000
MAX_BODY = 1600  # https://www.twilio.com/docs/errors/21617
_ADDRESS = re.compile(r"^whatsapp:\+[1-9][0-9]{6,14}$")
_ACCOUNT = re.compile(r"^AC[0-9a-f]{32}$")
_CONTENT = re.compile(r"^HX[0-9a-fA-F]{32}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]{1,32})\s*\}\}")
_BAD_VALUE = re.compile(r"[\n\r\t]| {5,}")  # https://www.twilio.com/docs/api/errors/21656
WINDOW = timedelta(hours=24)


@dataclass
class Fault:
    """What the emulator does to one upcoming create request instead of answering normally.

    `status`/`code`: answer with this Twilio error. `delay`: wait this many seconds first.
    `accept`: store the message (as if Twilio took it) before the delay and the error, which is
    how a timeout or dropped connection after Twilio accepted a message looks to the client.
    """

    status: int | None = None
    code: int | None = None
    delay: float = 0.0
    accept: bool = False
    async_error: int | None = None  # accept, then a `failed` callback with this ErrorCode


@dataclass
class EmulatedContent:
    """A Content resource (a `twilio/text` template) of one account, with its WhatsApp
    approval status."""

    sid: str
    account_sid: str
    friendly_name: str
    language: str
    body: str
    variables: dict[str, str]
    status: str = "approved"
    date: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def resource(self, *, approvals: bool, account_sid: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "account_sid": account_sid,
            "date_created": self.date.isoformat().replace("+00:00", "Z"),
            "date_updated": self.date.isoformat().replace("+00:00", "Z"),
            "friendly_name": self.friendly_name,
            "language": self.language,
            "sid": self.sid,
            "types": {"twilio/text": {"body": self.body}},
            "variables": dict(self.variables),
        }
        if approvals:
            found["approval_requests"] = {
                "name": self.friendly_name,
                "category": "UTILITY",
                "content_type": "twilio/text",
                "status": self.status,
                "rejection_reason": "",
                "allow_category_change": True,
            }
        else:
            found["url"] = f"https://content.twilio.com/v1/Content/{self.sid}"
            found["links"] = {
                "approval_fetch": f"https://content.twilio.com/v1/Content/{self.sid}/ApprovalRequests"
            }
        return found


@dataclass
class FetchedMedia:
    """One outbound `MediaUrl` as the emulator fetched it."""

    url: str
    status: int
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class StoredMedia:
    """A file of an inbound message, served at its media URL until deleted."""

    account_sid: str
    auth_token: str = field(repr=False)
    message_sid: str = ""
    media_sid: str = ""
    content_type: str = ""
    data: bytes = field(default=b"", repr=False)
    deleted: bool = False
    downloads: int = 0


@dataclass
class EmulatedMessage:
    sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    status: str
    date_created: datetime
    status_callback: str | None
    auth_token: str = field(repr=False)
    date_sent: datetime | None = None
    media: list[FetchedMedia] = field(default_factory=list)
    error_code: int | None = None
    content_sid: str | None = None

    def resource(self) -> dict[str, Any]:
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": format_datetime(self.date_created),
            "date_sent": format_datetime(self.date_sent) if self.date_sent else None,
            "date_updated": format_datetime(self.date_sent or self.date_created),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": str(len(self.media)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to,
            "uri": uri,
        }


def twilio_error(status: int, code: int, message: str) -> web.Response:
    """Twilio's error body: https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions"""
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class TwilioEmulator:
    """The emulator's state and its aiohttp application (`app()`). Thread-safe: tests call its
    methods from the test thread while it serves from its own."""

    def __init__(
        self, *, callbacks: bool = True, callback_delays: tuple[float, ...] = (0.2, 0.5, 1.5)
    ) -> None:
        self.callbacks = callbacks
        self.url = ""  # set by whoever serves it
        self.callback_delays = callback_delays
        self._messages: collections.deque[EmulatedMessage] = collections.deque(maxlen=MAX_MESSAGES)
        self._faults: collections.deque[Fault] = collections.deque(maxlen=100)
        self._lock = threading.Lock()
        self.requests = 0
        self.create_times: collections.deque[float] = collections.deque(maxlen=MAX_MESSAGES)
        self.callback_results: collections.deque[int] = collections.deque(maxlen=1000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._media: dict[str, StoredMedia] = {}
        self.media_faults: collections.deque[int] = collections.deque(maxlen=100)
        self.media_requests = 0  # GETs of media URLs, answered or not
        self._contents: dict[str, EmulatedContent] = {}
        self._last_inbound: dict[tuple[str, str], datetime] = {}
        self.enforce_window = False
        self.content_requests = 0

    # --- test controls ----------------------------------------------------------------------

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to the next `times` create requests."""
        with self._lock:
            self._faults.extend([fault] * times)

    def sent(self, to: str | None = None) -> list[EmulatedMessage]:
        """Messages accepted so far, oldest first; only those to `to` (`whatsapp:+…`) if given."""
        with self._lock:
            return [m for m in self._messages if to is None or m.to == to]

    def add_media(
        self,
        account_sid: str,
        auth_token: str,
        message_sid: str,
        content_type: str,
        data: bytes,
    ) -> str:
        """Hold a file of inbound message `message_sid`, readable with this account's
        credentials; returns its MediaUrl (as Twilio puts in the webhook's `MediaUrl{N}`)."""
        media_sid = "ME" + secrets.token_hex(16)
        with self._lock:
            self._media[media_sid] = StoredMedia(
                account_sid, auth_token, message_sid, media_sid, content_type, data
            )
        return f"{self.url}{API}/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}"

    def media(self, media_sid: str) -> StoredMedia:
        """The inbound file `media_sid` (deleted or not), for tests to inspect."""
        with self._lock:
            return self._media[media_sid]

    def fail_media_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` media downloads with HTTP `status` (e.g. 503)."""
        with self._lock:
            self.media_faults.extend([status] * times)

    def add_content(
        self,
        account_sid: str,
        *,
        friendly_name: str,
        language: str,
        body: str,
        variables: dict[str, str] | None = None,
        status: str = "approved",
        sid: str | None = None,
    ) -> str:
        """Register (or, with `sid`, replace) a text template of `account_sid` (`*`: of every
        account, as `hotelchat dev` does for the demo templates); returns its ContentSid."""
        content = EmulatedContent(
            sid=sid or "HX" + secrets.token_hex(16),
            account_sid=account_sid,
            friendly_name=friendly_name,
            language=language,
            body=body,
            variables=dict(variables or {}),
            status=status,
        )
        with self._lock:
            self._contents[content.sid] = content
        return content.sid

    def remove_content(self, sid: str) -> None:
        with self._lock:
            self._contents.pop(sid, None)

    def guest_wrote(self, account_sid: str, guest: str, at: datetime | None = None) -> None:
        """The guest (`whatsapp:+…`) wrote to the account's number at `at` (default now): the
        24-hour window starts again."""
        with self._lock:
            self._last_inbound[(account_sid, guest)] = at or datetime.now(UTC)

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._faults.clear()
            self._media.clear()
            self.media_faults.clear()
            self.requests = 0
            self.media_requests = 0
            self.create_times.clear()
            self.callback_results.clear()
            self._contents.clear()
            self._last_inbound.clear()
            self.enforce_window = False
            self.content_requests = 0

    # --- the application --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_post(API + "/Accounts/{account}/Messages.json", self._create)
        app.router.add_get(API + "/Accounts/{account}/Messages.json", self._list)
        app.router.add_get(API + "/Accounts/{account}/Messages/{sid}.json", self._fetch)
        media_path = API + "/Accounts/{account}/Messages/{sid}/Media/{media}"
        app.router.add_get(media_path, self._get_media)
        app.router.add_delete(media_path, self._delete_media)
        app.router.add_get("/v1/ContentAndApprovals", self._list_contents)
        app.router.add_get("/v1/Content", self._list_contents)
        app.router.add_get("/_emulator/messages", self._emulator_messages)
        app.router.add_delete("/_emulator/messages", self._emulator_reset)
        app.on_cleanup.append(self._cancel_callbacks)
        return app

    def _auth(self, request: web.Request) -> str | None:
        """The auth token of a Basic header whose user is the path's Account SID."""
        user, token = self._basic(request)
        if user != request.match_info["account"] or not _ACCOUNT.fullmatch(user) or not token:
            return None
        return token

    @staticmethod
    def _basic(request: web.Request) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return "", ""
        try:
            user, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "", ""
        return user, token

    async def _list_contents(self, request: web.Request) -> web.Response:
        """The Content API's list, oldest first, paged like Twilio's (`meta.key` names the
        list; `next_page_url` carries a PageToken)."""
        account, token = self._basic(request)
        if not _ACCOUNT.fullmatch(account) or not token:
            return twilio_error(401, 20003, "Authenticate")
        with self._lock:
            self.content_requests += 1
            contents = [c for c in self._contents.values() if c.account_sid in (account, "*")]
        try:
            page_size = min(1000, max(1, int(request.query.get("PageSize", "50"))))
            page = max(0, int(request.query.get("Page", "0")))
        except ValueError:
            return twilio_error(400, 20001, "Invalid paging parameter")
        token_value = request.query.get("PageToken")
        start = page * page_size
        if token_value is not None:
            if not token_value.startswith("PT") or not token_value[2:].isdigit():
                return twilio_error(400, 20001, "Invalid PageToken")
            start = int(token_value[2:])
        chunk = contents[start : start + page_size]
        approvals = request.path.endswith("ContentAndApprovals")
        base = "https://content.twilio.com" + request.path
        url = f"{base}?PageSize={page_size}&Page={page}"
        next_url = None
        if start + page_size < len(contents):
            next_url = (
                f"{base}?PageSize={page_size}&Page={page + 1}&PageToken=PT{start + page_size}"
            )
        return web.json_response(
            {
                "contents": [c.resource(approvals=approvals, account_sid=account) for c in chunk],
                "meta": {
                    "page": page,
                    "page_size": page_size,
                    "first_page_url": f"{base}?PageSize={page_size}&Page=0",
                    "previous_page_url": None,
                    "url": url,
                    "next_page_url": next_url,
                    "key": "contents",
                },
            }
        )

    def _render(self, account: str, form: Any) -> str | web.Response:
        """The body of a ContentSid send, or Twilio's error."""
        sid = str(form.get("ContentSid", ""))
        with self._lock:
            content = self._contents.get(sid)
        if (
            not _CONTENT.fullmatch(sid)
            or content is None
            or content.account_sid not in (account, "*")
        ):
            return twilio_error(400, 21655, "The ContentSid is Invalid")
        raw = str(form.get("ContentVariables", "") or "{}")
        try:
            given = json.loads(raw)
        except ValueError:
            return twilio_error(400, 21656, "The ContentVariables Parameter is invalid")
        if not isinstance(given, dict):
            return twilio_error(400, 21656, "The ContentVariables Parameter is invalid")
        values = {**content.variables, **given}
        for name in _PLACEHOLDER.findall(content.body):
            value = values.get(name)
            if not isinstance(value, str) or not value or _BAD_VALUE.search(value):
                return twilio_error(400, 21656, "The ContentVariables Parameter is invalid")
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), content.body)

    def _window_open(self, account: str, to: str) -> bool:
        with self._lock:
            last = self._last_inbound.get((account, to))
        return last is not None and datetime.now(UTC) - last < WINDOW

    async def _create(self, request: web.Request) -> web.Response:
        with self._lock:
            self.requests += 1
            self.create_times.append(time.monotonic())
            fault = self._faults.popleft() if self._faults else None
        token = self._auth(request)
        if token is None:
            return twilio_error(401, 20003, "Authenticate")
        form = await request.post()
        to, from_ = str(form.get("To", "")), str(form.get("From", ""))
        body = str(form.get("Body", ""))
        media_urls = [str(u) for u in form.getall("MediaUrl", [])]
        account = request.match_info["account"]
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not _ADDRESS.fullmatch(to):
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not _ADDRESS.fullmatch(from_):
            return twilio_error(400, 21212, f"Invalid From Number (caller ID): {from_}")
        if len(media_urls) > 10:
            return twilio_error(400, 21623, "Number of media files exceeds allowed limit.")
        content_sid = str(form.get("ContentSid", "")) or None
        if content_sid is None and form.get("ContentVariables"):
            return twilio_error(400, 21654, "ContentSid Required")
        if content_sid is not None:
            rendered = self._render(account, form)
            if isinstance(rendered, web.Response):
                return rendered
            body = rendered
        elif not body and not media_urls:
            return twilio_error(400, 21602, "Message body is required.")
        elif self.enforce_window and not self._window_open(account, to):
            return twilio_error(
                400,
                63016,
                "Failed to send freeform message because you are outside the allowed window. "
                "If you are using WhatsApp, please use a Message Template.",
            )
        if len(body) > MAX_BODY:
            return twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        message = EmulatedMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=account,
            from_=from_,
            to=to,
            body=body,
            status="queued",
            date_created=datetime.now(UTC).replace(microsecond=0),
            status_callback=str(form["StatusCallback"]) if form.get("StatusCallback") else None,
            auth_token=token,
            content_sid=content_sid,
        )
        if media_urls:
            message.media = await self._fetch_media_urls(media_urls)
            if any(m.status != 200 for m in message.media):
                message.status, message.error_code = "failed", 11200
        if fault is not None and fault.async_error is not None:
            self._accept(message, failure=fault.async_error)
            return web.json_response(message.resource(), status=201)
        if fault is not None:
            if fault.accept:
                self._accept(message)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                message_text = "Too Many Requests" if fault.status == 429 else "Emulated failure"
                return twilio_error(fault.status, fault.code or 20500, message_text)
            if fault.accept:
                return web.json_response(message.resource(), status=201)
        self._accept(message)
        return web.json_response(message.resource(), status=201)

    async def _fetch_media_urls(self, urls: list[str]) -> list[FetchedMedia]:
        """GET each outbound MediaUrl as Twilio does (no credentials, 10 s, 16 MB at most)."""
        fetched = []
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for url in urls:
                try:
                    async with session.get(url) as response:
                        data = await response.content.read(16 * 1024 * 1024 + 1)
                        fetched.append(FetchedMedia(
                            url, response.status, response.headers.get("Content-Type", ""), data
                        ))  # fmt: skip
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("emulator.media_fetch_failed", error_class=type(exc).__name__)
                    fetched.append(FetchedMedia(url, 0, "", b""))
        return fetched

    def _stored_media(self, request: web.Request) -> StoredMedia | None:
        media_sid = request.match_info["media"].removesuffix(".json")
        with self._lock:
            found = self._media.get(media_sid)
        if (
            found is None
            or found.deleted
            or found.account_sid != request.match_info["account"]
            or found.message_sid != request.match_info["sid"]
        ):
            return None
        return found

    async def _get_media(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.media_requests += 1
        token = self._auth(request)
        found = self._stored_media(request)
        if found is not None and token is not None and token != found.auth_token:
            token = None
        with self._lock:
            fault = self.media_faults.popleft() if self.media_faults else None
        if fault is not None:
            return twilio_error(fault, 20500 if fault >= 500 else 20001, "Emulated failure")
        if token is None:
            return twilio_error(401, 20003, "Authenticate")
        if found is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        found.downloads += 1
        return web.Response(body=found.data, headers={"Content-Type": found.content_type})

    async def _delete_media(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        found = self._stored_media(request)
        if token is None or (found is not None and token != found.auth_token):
            return twilio_error(401, 20003, "Authenticate")
        if found is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        found.deleted = True
        return web.Response(status=204)

    def _accept(self, message: EmulatedMessage, failure: int | None = None) -> None:
        with self._lock:
            self._messages.append(message)
        if message.status_callback and (self.callbacks or failure is not None):
            task = asyncio.get_running_loop().create_task(self._send_callbacks(message, failure))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_callbacks(self, message: EmulatedMessage, failure: int | None = None) -> None:
        assert message.status_callback is not None
        timeout = aiohttp.ClientTimeout(total=10)
        steps: list[tuple[str, float]] = list(
            zip(("sent", "delivered", "read"), self.callback_delays, strict=False)
        )
        if failure is not None:
            steps = [("failed", self.callback_delays[0])]
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for status, delay in steps:
                await asyncio.sleep(delay)
                message.status = status
                if status == "sent":
                    message.date_sent = datetime.now(UTC).replace(microsecond=0)
                params = {
                    "AccountSid": message.account_sid,
                    "ApiVersion": "2010-04-01",
                    "ChannelPrefix": "whatsapp",
                    "From": message.from_,
                    "To": message.to,
                    "MessageSid": message.sid,
                    "MessageStatus": status,
                    "SmsSid": message.sid,
                    "SmsStatus": status,
                }
                if failure is not None:
                    params["ErrorCode"] = str(failure)
                headers = {
                    "X-Twilio-Signature": sign(message.auth_token, message.status_callback, params),
                    "User-Agent": "TwilioProxy/1.1",
                }
                try:
                    async with session.post(
                        message.status_callback, data=params, headers=headers
                    ) as response:
                        self.callback_results.append(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("emulator.callback_failed", error_class=type(exc).__name__)
                    return

    async def _cancel_callbacks(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _list(self, request: web.Request) -> web.Response:
        if self._auth(request) is None:
            return twilio_error(401, 20003, "Authenticate")
        account = request.match_info["account"]
        to, from_ = request.query.get("To"), request.query.get("From")
        try:
            page_size = min(1000, max(1, int(request.query.get("PageSize", "50"))))
        except ValueError:
            return twilio_error(400, 20001, "Invalid PageSize")
        with self._lock:
            found = [
                m.resource()
                for m in reversed(self._messages)
                if m.account_sid == account
                and (to is None or m.to == to)
                and (from_ is None or m.from_ == from_)
            ][:page_size]
        uri = f"{API}/Accounts/{account}/Messages.json?PageSize={page_size}&Page=0"
        return web.json_response(
            {
                "end": max(0, len(found) - 1),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": page_size,
                "previous_page_uri": None,
                "messages": found,
                "start": 0,
                "uri": uri,
            }
        )

    async def _fetch(self, request: web.Request) -> web.Response:
        if self._auth(request) is None:
            return twilio_error(401, 20003, "Authenticate")
        with self._lock:
            for message in self._messages:
                if message.sid == request.match_info["sid"]:
                    return web.json_response(message.resource())
        return twilio_error(404, 20404, "The requested resource was not found")

    async def _emulator_messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        return web.json_response([m.resource() for m in self.sent(to)])

    async def _emulator_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)
