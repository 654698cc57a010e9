"""The one place errors become HTTP responses: `HotelChatError` subclasses map to statuses, and
the body is always `{"error": {"code": ..., "message": ...}}`. Unexpected exceptions are logged
with their class and answered 500 with no detail."""

from __future__ import annotations

import structlog
from quart import Quart, Response, jsonify
from werkzeug.exceptions import HTTPException

from hotelchat.domain.errors import (
    Conflict,
    Forbidden,
    HotelChatError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TemporaryFailure,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

log = structlog.get_logger(__name__)

HTTP_STATUS: dict[type[HotelChatError], int] = {
    PayloadTooLarge: 413,
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooManyRequests: 429,
    Unavailable: 503,
    TemporaryFailure: 503,
}


def status_for(exc: HotelChatError) -> int:
    """The HTTP status for `exc`: its nearest class in `HTTP_STATUS`, else 500."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def register_error_handlers(app: Quart) -> None:
    """Install the handlers on `app`."""

    @app.errorhandler(HotelChatError)
    async def hotelchat_error(exc: HotelChatError) -> tuple[Response, int]:
        status = status_for(exc)
        response, status = error_response(exc.code, exc.message, status)
        if status == 503:
            response.headers["Retry-After"] = "5"
        return response, status

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, exc.description or exc.name or "error", status)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> tuple[Response, int]:
        log.error("web.unexpected_error", error_class=type(exc).__name__, exc_info=exc)
        return error_response("internal", "internal error", 500)
