"""Browser-facing security for the dashboard and the web chat: the session cookie, CSRF checks,
the Content-Security-Policy, and the caller's address for throttling.

Pages load scripts and styles only from our own origin (no inline script anywhere), so an
`<img onerror>` or a `javascript:` link inside a guest's message has nothing to run: guest and AI
text is inserted as text, never as HTML, and the policy forbids it even if that ever failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import Response, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from hotelchat.domain.errors import PasswordChangeRequired, Unauthenticated
from hotelchat.entrypoints.web.context import container
from hotelchat.services import auth
from hotelchat.services.ports import AgentSession

P = ParamSpec("P")
R = TypeVar("R")

SESSION_COOKIE = "hc_session"
LOGIN_CSRF_COOKIE = "hc_login"
CSRF_HEADER = "X-CSRF-Token"


def secure_cookies() -> bool:
    """Mark cookies `Secure` whenever the public URL is https."""
    return container().settings.public_url.startswith("https://")


def set_session_cookie(response: Response | WerkzeugResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=auth.SESSION_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(),
        path="/",
    )


def clear_session_cookie(response: Response | WerkzeugResponse) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")


def client_address() -> str:
    """The caller's address as the server sees it (behind a proxy: the proxy's, unless the
    deployment's proxy rewrites it); only used to throttle."""
    return request.remote_addr or "unknown"


async def current_session(*, password_change: bool = False) -> AgentSession:
    """The logged-in agent of this request; raises `Unauthenticated`, or
    `PasswordChangeRequired` (unless `password_change`) for a one-time password."""
    return await auth.session_for(
        container().deps, request.cookies.get(SESSION_COOKIE), password_change=password_change
    )


def session_token() -> str:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthenticated("log in first")
    return token


def agent_page(
    view: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R | WerkzeugResponse]]:
    """A page for logged-in agents: anyone else is sent to the login page."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | WerkzeugResponse:
        try:
            await current_session()
        except Unauthenticated:
            return redirect("/login")
        except PasswordChangeRequired:
            return redirect("/account/password")
        return await view(*args, **kwargs)

    return wrapper


async def checked_session(*, password_change: bool = False) -> AgentSession:
    """The session, and for a state-changing request its CSRF token checked (header
    `X-CSRF-Token` or form field `csrf_token`); raises `Unauthenticated` or `Forbidden`."""
    session = await current_session(password_change=password_change)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        submitted = request.headers.get(CSRF_HEADER)
        if submitted is None and request.mimetype == "application/x-www-form-urlencoded":
            submitted = (await request.form).get("csrf_token")
        auth.check_csrf(session, submitted)
    return session


def content_security_policy(*, embeddable: bool) -> str:
    """The page policy: our own origin only; the web chat may be framed by hotel websites."""
    public = container().settings.public_url
    parts = urlsplit(public)
    websocket = ("wss://" if parts.scheme == "https" else "ws://") + parts.netloc
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",  # blob: the web chat's photos, fetched with its token
        f"connect-src 'self' {websocket}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors *" if embeddable else "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def add_page_headers(response: Response, *, embeddable: bool = False) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(embeddable=embeddable)
    if not embeddable:
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response
