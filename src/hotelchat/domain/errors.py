"""The one error tree of HotelChat: every failure a caller should handle is a `HotelChatError`.

Each class carries a stable machine-readable `code`. The web layer maps classes to HTTP statuses in
one place (`entrypoints.web.errors`); the worker maps `TemporaryFailure` to a deferred retry.
Adapters wrap vendor exceptions into these with `raise ... from exc`, so the cause stays attached.
"""

from __future__ import annotations


class HotelChatError(Exception):
    """Base of all expected failures. `message` is safe to show to the caller."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(HotelChatError):
    """The request is malformed: a field is missing, too long, or of the wrong shape."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class Unauthenticated(HotelChatError):
    """The caller did not prove who it is (missing or bad signature, no session)."""

    code = "unauthenticated"


class Forbidden(HotelChatError):
    """The caller is known but may not do this."""

    code = "forbidden"


class PasswordChangeRequired(Forbidden):
    """The agent logged in with a one-time password and must choose their own first."""

    code = "password_change_required"


class NotFound(HotelChatError):
    """No such thing, or not one the caller may see (both answer the same, so nothing leaks)."""

    code = "not_found"


class Conflict(HotelChatError):
    """The thing is in a state that does not allow this (e.g. another agent owns it)."""

    code = "conflict"


class TooManyRequests(HotelChatError):
    """The caller is over a rate limit; try again later."""

    code = "too_many_requests"


class Unavailable(HotelChatError):
    """A dependency (PostgreSQL, Redis) did not answer in time; the caller may try again."""

    code = "unavailable"


class Overloaded(Unavailable):
    """This process has as much work in flight as it may take; the caller may try again."""

    code = "overloaded"


class TemporaryFailure(HotelChatError):
    """Background work that should be retried after `defer_seconds`."""

    code = "temporary_failure"

    def __init__(self, message: str, *, defer_seconds: float = 5.0) -> None:
        super().__init__(message)
        self.defer_seconds = defer_seconds


class ModelError(HotelChatError):
    """The chat model could not answer. `kind` is one of `MODEL_ERROR_KINDS`."""

    code = "model_error"

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message, code=f"model_{kind}")
        self.kind = kind


MODEL_ERROR_KINDS = (
    "timeout",
    "connection",
    "rate_limited",
    "quota",
    "server_error",
    "auth",
    "bad_request",
    "circuit_open",
    "budget",
    "bad_response",
)


class SendError(HotelChatError):
    """The messaging provider refused or failed a send.

    `retryable` is True when trying again may succeed (429, 5xx); `maybe_sent` is True when the
    provider may have accepted the message although we got no answer (a timeout or a dropped
    connection after the request went out), so a retry must first look for it.
    `provider_code` is the provider's error code (Twilio's numeric codes, e.g. 63016), if any.
    """

    code = "send_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        maybe_sent: bool = False,
        provider_code: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.maybe_sent = maybe_sent
        self.provider_code = provider_code
        self.status = status


class MediaRefused(HotelChatError):
    """A media file that will never be accepted as it is (not the provider's URL, over the size
    cap, a type WhatsApp does not allow); `reason` is the sentence shown to staff."""

    code = "media_refused"
