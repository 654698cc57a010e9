"""WhatsApp through Twilio's official Python SDK: sending messages, finding one that an earlier
attempt may have sent, and validating webhook signatures.

The SDK has no base-URL setting, so `RoutedHttpClient` (an SDK `AsyncHttpClient`, which the SDK's
`Client` accepts as `http_client`) rewrites `https://*.twilio.com` to `TWILIO_API_BASE_URL` when
that is set: the local emulator under `hotelchat dev` and in tests. It also gives every request an
`aiohttp.ClientTimeout` and never logs request parameters (they hold phone numbers and bodies).

Protocol facts:
- Sending: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
- Listing: https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources
- Statuses: https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
- Errors: https://www.twilio.com/docs/api/errors (e.g. 63016: outside the 24-hour window)
- 429 / 20429: "never processed and always safe to retry" after a backoff,
  https://www.twilio.com/docs/api/errors/20429; a send refused so is retried here (bounded, with
  exponential backoff and jitter, tenacity) before the job is.
- Signatures: https://www.twilio.com/docs/usage/webhooks/webhooks-security
- Media of inbound messages (fetch with the account's credentials, delete):
  https://www.twilio.com/docs/messaging/api/media-resource
- Sending media: `MediaUrl`, https://www.twilio.com/docs/whatsapp/guidance-whatsapp-media-messages
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from opentelemetry.trace import SpanKind
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from hotelchat.domain.addresses import whatsapp_address
from hotelchat.domain.errors import MediaRefused, SendError, TemporaryFailure
from hotelchat.domain.model import DeliveryStatus, SenderRoute, provider_status
from hotelchat.domain.templates import Template
from hotelchat.observability import tracing
from hotelchat.services.ports import Download, SentMessage

log = structlog.get_logger(__name__)

RECONCILE_PAGE = 20
TOO_MANY_REQUESTS = 20429  # https://www.twilio.com/docs/api/errors/20429
MAX_RATE_LIMIT_WAIT = 8.0  # seconds between two attempts after a 429, at most
# Twilio's clock and ours may differ a little; look a bit before the attempt started.
CLOCK_SKEW = timedelta(minutes=2)


class RoutedHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """The Twilio SDK's async HTTP client on one shared aiohttp session, with a total timeout
    per request and an optional base URL replacing `https://*.twilio.com`.

    Create it inside a running event loop; `close()` it on shutdown.
    """

    def __init__(self, *, timeout: float, base_url: str | None = None) -> None:
        super().__init__(logger=logging.getLogger(__name__), is_async=True, timeout=timeout)
        self._total = timeout
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
        )

    def rewrite(self, url: str) -> str:
        """`url` with its scheme and host replaced by the base URL's, for `*.twilio.com`."""
        parts = urlsplit(url)
        if self._base is None or not (parts.hostname or "").endswith("twilio.com"):
            return url
        path = self._base.path + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Make one request; raises `aiohttp.ClientError` or `TimeoutError` on transport
        failures (the SDK turns HTTP error statuses into `TwilioRestException`)."""
        sent_headers = dict(headers or {})
        if auth is not None:
            sent_headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        async with self._session.request(
            method.upper(),
            self.rewrite(url),
            params=cast(Mapping[str, str], params),
            data=data,
            headers=sent_headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self._total),
            allow_redirects=allow_redirects,
        ) as response:
            text = await response.text()
            return Response(response.status, text, response.headers)

    async def close(self) -> None:
        await self._session.close()


class TwilioWhatsApp:
    """`services.ports.WhatsAppSender` on the official Twilio SDK, with each hotel's own
    Account SID and auth token."""

    def __init__(
        self,
        http_client: RoutedHttpClient,
        *,
        rate_limit_retries: int = 3,
        rate_limit_backoff_seconds: float = 1.0,
    ) -> None:
        self._http = http_client
        self._retries = rate_limit_retries
        self._backoff = rate_limit_backoff_seconds

    def _client(self, route: SenderRoute) -> Client:
        # A Client is a few attribute assignments; the connection pool is the shared session.
        return Client(route.account_sid, route.auth_token, http_client=self._http)

    async def send(
        self,
        route: SenderRoute,
        *,
        to_number: str,
        body: str,
        status_callback: str | None,
        media_urls: Sequence[str] = (),
        content_sid: str | None = None,
        content_variables: Mapping[str, str] | None = None,
    ) -> SentMessage:
        """Create the message at Twilio: `body` with `media_urls` as `MediaUrl` (URLs Twilio
        fetches), or with `content_sid` the template with `content_variables` (JSON) and no
        `Body` (https://www.twilio.com/docs/api/errors/63016).
        Raises `SendError`: `retryable` for 429, 5xx and transport failures; `maybe_sent` when
        the request may have reached Twilio."""
        kwargs: dict[str, Any] = {
            "to": whatsapp_address(to_number),
            "from_": whatsapp_address(route.phone_number),
        }
        if content_sid:
            kwargs["content_sid"] = content_sid
            kwargs["content_variables"] = json.dumps(dict(content_variables or {}))
        elif body:
            kwargs["body"] = body
        if media_urls:
            kwargs["media_url"] = list(media_urls)
        if status_callback:
            kwargs["status_callback"] = status_callback
        client = self._client(route)

        async def create() -> Any:
            with tracing.span("twilio messages.create", kind=SpanKind.CLIENT):
                return await client.messages.create_async(**kwargs)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential_jitter(
                multiplier=self._backoff, max=MAX_RATE_LIMIT_WAIT, jitter=self._backoff
            ),
            retry=retry_if_exception(_rate_limited),
            before_sleep=_log_rate_limited,
            reraise=True,
        )
        try:
            message: Any = await retrying(create)
        except TwilioRestException as exc:
            raise _rest_error(exc) from exc
        except aiohttp.ClientConnectorError as exc:
            # Never connected: Twilio cannot have the message.
            raise SendError("could not connect to Twilio", retryable=True) from exc
        except (TimeoutError, aiohttp.ClientError, TwilioException) as exc:
            raise SendError(
                f"no answer from Twilio ({type(exc).__name__})", retryable=True, maybe_sent=True
            ) from exc
        status = provider_status(message.status) or DeliveryStatus.QUEUED
        return SentMessage(sid=message.sid, status=status)

    async def find_sent(
        self, route: SenderRoute, *, to_number: str, body: str, since: datetime
    ) -> SentMessage | None:
        """The message with this body that we sent to `to_number` at or after `since`, if Twilio
        has it. Bodies are compared with runs of whitespace collapsed: a template send is looked
        for by our rendered preview, which is what Twilio stores as the body of a `twilio/text`
        template (a template Twilio renders otherwise would not be found, and be sent again).
        Raises `SendError` (retryable) when Twilio cannot be asked."""
        try:
            with tracing.span("twilio messages.list", kind=SpanKind.CLIENT):
                messages = await self._client(route).messages.list_async(
                    to=whatsapp_address(to_number),
                    from_=whatsapp_address(route.phone_number),
                    limit=RECONCILE_PAGE,
                )
        except TwilioRestException as exc:
            raise _rest_error(exc) from exc
        except (TimeoutError, aiohttp.ClientError, TwilioException) as exc:
            raise SendError("could not list messages at Twilio", retryable=True) from exc
        for message in messages:
            created = message.date_created
            same = _squeeze(message.body or "") == _squeeze(body)
            if same and (created is None or created >= since - CLOCK_SKEW):
                return SentMessage(
                    sid=message.sid, status=provider_status(message.status) or DeliveryStatus.QUEUED
                )
        return None


class TwilioMedia:
    """`services.ports.MediaSource`: inbound media fetched from Twilio with the hotel's Account
    SID and auth token (HTTP Basic) on its own aiohttp session, with a total timeout (seconds)
    and a size cap read as the body streams; deleted through the official SDK.

    Twilio answers a media URL with the file or a redirect to its CDN; redirects are followed
    (at most 3) and aiohttp drops the Authorization header when one leaves the host."""

    CHUNK = 64 * 1024

    def __init__(self, http_client: RoutedHttpClient, *, timeout: float) -> None:
        self._http = http_client
        self._timeout = timeout
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=50),
        )

    async def download(self, route: SenderRoute, url: str, *, max_bytes: int) -> Download:
        """The file at `url` (already checked to be Twilio's media URL). Raises `MediaRefused`
        when it is larger than `max_bytes` bytes or Twilio says it does not exist (404), and
        `TemporaryFailure` for 5xx, 429, auth failures that may pass, timeouts and transport
        errors."""
        headers = {"Authorization": aiohttp.encode_basic_auth(route.account_sid, route.auth_token)}
        try:
            with tracing.span("twilio media.fetch", kind=SpanKind.CLIENT):
                async with self._session.get(url, headers=headers, max_redirects=3) as response:
                    if response.status == 404:
                        raise MediaRefused("Twilio has no such media (deleted or never there)")
                    if response.status != 200:
                        raise TemporaryFailure(
                            f"Twilio's media endpoint answered {response.status}"
                        )
                    declared = response.content_length
                    if declared is not None and declared > max_bytes:
                        raise MediaRefused(f"the file is larger than {max_bytes // 2**20} MB")
                    chunks, size = [], 0
                    async for chunk in response.content.iter_chunked(self.CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise MediaRefused(f"the file is larger than {max_bytes // 2**20} MB")
                        chunks.append(chunk)
                    content_type = response.headers.get("Content-Type", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TemporaryFailure(
                f"Twilio's media endpoint did not answer ({type(exc).__name__})"
            ) from exc
        return Download(content_type=content_type, data=b"".join(chunks))

    async def delete(self, route: SenderRoute, message_sid: str, media_sid: str) -> None:
        """Delete Twilio's copy; one already gone (404) counts as deleted. Raises
        `TemporaryFailure` when Twilio cannot be asked or refuses."""
        client = Client(route.account_sid, route.auth_token, http_client=self._http)
        try:
            with tracing.span("twilio media.delete", kind=SpanKind.CLIENT):
                await client.messages(message_sid).media(media_sid).delete_async()
        except TwilioRestException as exc:
            if int(exc.status) == 404:
                return
            raise TemporaryFailure(f"Twilio refused to delete the media ({exc.status})") from exc
        except (TimeoutError, aiohttp.ClientError, TwilioException) as exc:
            raise TemporaryFailure("could not delete the media at Twilio") from exc

    async def close(self) -> None:
        await self._session.close()


def _rate_limited(exc: BaseException) -> bool:
    """Twilio refused the request for its rate: HTTP 429 (error 20429 and its kin). Such a
    request was never processed, so it is safe to send again."""
    return isinstance(exc, TwilioRestException) and (
        int(exc.status) == 429 or exc.code == TOO_MANY_REQUESTS
    )


def _log_rate_limited(state: RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action is not None else None
    log.warning("twilio.rate_limited", attempt=state.attempt_number, retry_in_seconds=wait)


def _squeeze(text: str) -> str:
    return " ".join(text.split())


# Content resources are listed 100 at a time, up to 1,000 (a hotel has a few dozen).
CONTENT_PAGE = 100
MAX_CONTENTS = 1000


class TwilioContent:
    """`services.ports.ContentSource` on the SDK's Content API (`content.v1.content_and_approvals`:
    each Content resource with its WhatsApp approval status). Only `twilio/text` templates are
    read: the body of other types (media, quick replies…) is not a text HotelChat can preview.
    https://www.twilio.com/docs/content/content-api-resources
    """

    def __init__(self, http_client: RoutedHttpClient) -> None:
        self._http = http_client

    async def templates(self, route: SenderRoute) -> list[Template]:
        """The account's text templates; raises `SendError` when Twilio cannot be asked."""
        client = Client(route.account_sid, route.auth_token, http_client=self._http)
        try:
            with tracing.span("twilio content_and_approvals.list", kind=SpanKind.CLIENT):
                contents = await client.content.v1.content_and_approvals.list_async(
                    page_size=CONTENT_PAGE, limit=MAX_CONTENTS
                )
        except TwilioRestException as exc:
            raise _rest_error(exc) from exc
        except (TimeoutError, aiohttp.ClientError, TwilioException) as exc:
            raise SendError("could not list templates at Twilio", retryable=True) from exc
        found: list[Template] = []
        for content in contents:
            text = (content.types or {}).get("twilio/text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str):
                continue
            approval = content.approval_requests or {}
            status = approval.get("status") if isinstance(approval, dict) else None
            found.append(
                Template(
                    content_sid=content.sid or "",
                    friendly_name=content.friendly_name or "",
                    language=content.language or "",
                    body=text["body"],
                    variables={str(k): str(v) for k, v in (content.variables or {}).items()},
                    approval_status=str(status or "unsubmitted").lower(),
                    source="twilio",
                )
            )
        return found


def _rest_error(exc: TwilioRestException) -> SendError:
    status = int(exc.status)
    retryable = status == 429 or status >= 500
    return SendError(
        f"Twilio answered {status} (error {exc.code})",
        retryable=retryable,
        provider_code=exc.code if isinstance(exc.code, int) else None,
        status=status,
    )


class TwilioSignatures:
    """`services.ports.SignatureValidator` with the SDK's `RequestValidator` (HMAC-SHA1 of the
    URL and the sorted POST parameters, keyed with the account's auth token)."""

    def is_valid(
        self, auth_token: str, url: str, params: Mapping[str, str], signature: str
    ) -> bool:
        return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send for a POST of `params` to `url` (for the
    emulator and `hotelchat simulate`)."""
    signature: str = RequestValidator(auth_token).compute_signature(url, dict(params))
    return signature


async def close_quietly(client: RoutedHttpClient) -> None:
    """Close the HTTP session, waiting at most 5 seconds."""
    try:
        async with asyncio.timeout(5):
            await client.close()
    except TimeoutError:
        log.warning("twilio.close_timeout")
