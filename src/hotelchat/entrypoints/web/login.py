"""Agent login and logout pages.

The login form carries a CSRF token bound to a short-lived cookie (double submit), since there is
no session yet; logout is a POST with the session's CSRF token. The answer to a wrong email or
password never says which was wrong.
"""

from __future__ import annotations

import hmac
import secrets

from quart import Blueprint, Response, redirect, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from hotelchat.domain.errors import (
    Forbidden,
    InvalidInput,
    PasswordChangeRequired,
    TooManyRequests,
    Unauthenticated,
)
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    add_page_headers,
    checked_session,
    clear_session_cookie,
    client_address,
    current_session,
    secure_cookies,
    set_session_cookie,
)
from hotelchat.services import auth
from hotelchat.services.ports import AgentSession

blueprint = Blueprint("login", __name__)


async def _login_page(error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    html = await render_template("login.html", csrf_token=token, error=error)
    response = add_page_headers(Response(html, status=status, content_type="text/html"))
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(),
        path="/login",
    )
    return response


@blueprint.get("/")
async def root() -> WerkzeugResponse:
    return redirect("/dashboard")


@blueprint.get("/login")
async def login_form() -> Response | WerkzeugResponse:
    try:
        await auth.session_for(container().deps, request.cookies.get(SESSION_COOKIE))
    except Unauthenticated:
        return await _login_page()
    except PasswordChangeRequired:
        return redirect("/account/password")
    return redirect("/dashboard")


@blueprint.post("/login")
async def login() -> Response | WerkzeugResponse:
    form = await request.form
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    submitted = form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected, submitted):
        return await _login_page("Your login form expired; please try again.", status=403)
    try:
        logged_in = await auth.log_in(
            container().deps,
            form.get("email", ""),
            form.get("password", ""),
            client=client_address(),
        )
    except TooManyRequests as exc:
        return await _login_page(exc.message, status=429)
    except (Unauthenticated, InvalidInput) as exc:
        return await _login_page(exc.message.capitalize() + ".", status=401)
    response = redirect("/dashboard", code=303)
    set_session_cookie(response, logged_in.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@blueprint.post("/logout")
async def logout() -> WerkzeugResponse:
    try:
        await checked_session(password_change=True)
    except Unauthenticated:
        pass
    except Forbidden:
        raise
    else:
        await auth.log_out(container().deps, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("/login", code=303)
    clear_session_cookie(response)
    return response


async def _password_page(
    session: AgentSession, error: str | None = None, status: int = 200
) -> Response:
    html = await render_template(
        "password.html",
        csrf_token=session.csrf_token,
        required=session.password_change_required,
        name=session.display_name,
        error=error,
    )
    return add_page_headers(Response(html, status=status, content_type="text/html"))


@blueprint.get("/account/password")
async def password_form() -> Response | WerkzeugResponse:
    """Choose a new password: where an agent given a one-time password lands after login."""
    try:
        session = await current_session(password_change=True)
    except Unauthenticated:
        return redirect("/login")
    return await _password_page(session)


@blueprint.post("/account/password")
async def change_password() -> Response | WerkzeugResponse:
    try:
        session = await checked_session(password_change=True)
    except Unauthenticated:
        return redirect("/login")
    form = await request.form
    new, again = form.get("new_password", ""), form.get("new_password_again", "")
    if new != again:
        return await _password_page(session, "The two new passwords differ.", status=400)
    try:
        await auth.change_password(
            container().deps, session, form.get("current_password", ""), new,
            client=client_address(),
        )  # fmt: skip
    except TooManyRequests as exc:
        return await _password_page(session, exc.message.capitalize() + ".", status=429)
    except (Unauthenticated, InvalidInput) as exc:
        return await _password_page(session, exc.message.capitalize() + ".", status=400)
    return redirect("/dashboard", code=303)
