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

from hotelchat.domain.errors import Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    add_page_headers,
    checked_session,
    clear_session_cookie,
    client_address,
    secure_cookies,
    set_session_cookie,
)
from hotelchat.services import auth

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
        await checked_session()
    except Unauthenticated:
        pass
    except Forbidden:
        raise
    else:
        await auth.log_out(container().deps, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("/login", code=303)
    clear_session_cookie(response)
    return response
