"""Agent login, sessions and the hotel an agent works in.

The session cookie holds a random 256-bit token; PostgreSQL keeps only its SHA-256, with the
agent, the current hotel, a CSRF token and a sliding expiry. Logging out deletes it, so a copied
cookie dies with the session. Failed logins are throttled per email and per client address in
Redis, shared by every web process; the answer never says whether the email exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from hotelchat.domain.errors import (
    Forbidden,
    InvalidInput,
    PasswordChangeRequired,
    TooManyRequests,
    Unauthenticated,
)
from hotelchat.services.ports import AgentSession, Deps, Membership

log = structlog.get_logger(__name__)

SESSION_SECONDS = 12 * 3600  # sliding: every request extends it
FAILED_LOGINS_PER_EMAIL = "5/15 minutes"
FAILED_LOGINS_PER_ADDRESS = "30/15 minutes"
MAX_EMAIL = 254
MAX_PASSWORD = 256


@dataclass(frozen=True, slots=True)
class LoggedIn:
    token: str  # for the cookie; never stored
    session: AgentSession


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def log_in(deps: Deps, email: str, password: str, *, client: str) -> LoggedIn:
    """Check an agent's email and password and open a session in their first hotel.

    `client` is the caller's address, for throttling. Raises `InvalidInput` (malformed),
    `TooManyRequests` (too many recent failures for this email or address) or `Unauthenticated`
    (wrong email or password, disabled agent, or no hotel).
    """
    email = email.strip().lower()
    if not email or len(email) > MAX_EMAIL or "@" not in email or len(password) > MAX_PASSWORD:
        raise InvalidInput("enter your email and password")
    email_key, client_key = f"login-email:{email}", f"login-client:{client}"
    if not (
        await deps.limiter.allows(email_key, limit=FAILED_LOGINS_PER_EMAIL)
        and await deps.limiter.allows(client_key, limit=FAILED_LOGINS_PER_ADDRESS)
    ):
        log.warning("auth.throttled")
        raise TooManyRequests("too many failed logins; try again in a few minutes")
    credentials = await deps.agents.credentials(email)
    matched = await deps.passwords.verify(
        credentials.password_hash if credentials else None, password
    )
    hotels = await deps.agents.memberships(credentials.agent_id) if credentials else []
    if credentials is None or not matched or credentials.disabled or not hotels:
        await deps.limiter.hit(email_key, limit=FAILED_LOGINS_PER_EMAIL)
        await deps.limiter.hit(client_key, limit=FAILED_LOGINS_PER_ADDRESS)
        log.info("auth.login_failed")
        raise Unauthenticated("wrong email or password")
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    await deps.agents.create_session(
        token_hash(token), credentials.agent_id, hotels[0].hotel_id, csrf, SESSION_SECONDS
    )
    log.info("auth.logged_in", agent_id=credentials.agent_id)
    expires = datetime.now(UTC) + timedelta(seconds=SESSION_SECONDS)
    session = AgentSession(
        credentials.agent_id,
        credentials.display_name,
        hotels[0].hotel_id,
        hotels[0].slug,
        csrf,
        expires,
    )
    return LoggedIn(token, session)


async def session_for(
    deps: Deps, token: str | None, *, password_change: bool = False
) -> AgentSession:
    """The session a cookie token opens; raises `Unauthenticated` when there is none, and
    `PasswordChangeRequired` when the agent logged in with a one-time password (unless
    `password_change`: the page where they choose their own)."""
    if not token or len(token) > 128:
        raise Unauthenticated("log in first")
    session = await deps.agents.session(token_hash(token), SESSION_SECONDS)
    if session is None:
        raise Unauthenticated("your session has ended; log in again")
    if session.password_change_required and not password_change:
        raise PasswordChangeRequired("choose your own password first, at /account/password")
    return session


MIN_PASSWORD = 10


async def change_password(
    deps: Deps, session: AgentSession, current: str, new: str, *, client: str
) -> None:
    """Replace the agent's password with `new` once `current` is checked; the one-time
    password the operator issued stops working. Raises `InvalidInput` (too short or long, the
    same as before), `TooManyRequests` (too many wrong `current` passwords) or `Unauthenticated`
    (`current` is wrong)."""
    if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise InvalidInput(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if new == current:
        raise InvalidInput("choose a password other than the one you were given")
    key = f"password-change:{session.agent_id}"
    if not await deps.limiter.allows(key, limit=FAILED_LOGINS_PER_EMAIL):
        raise TooManyRequests("too many wrong passwords; try again in a few minutes")
    stored = await deps.agents.password_hash(session.agent_id)
    if len(current) > MAX_PASSWORD or not await deps.passwords.verify(stored, current):
        await deps.limiter.hit(key, limit=FAILED_LOGINS_PER_EMAIL)
        raise Unauthenticated("your current password is not right")
    await deps.agents.change_password(session.agent_id, deps.passwords.hash(new))
    log.info("auth.password_changed", agent_id=session.agent_id)


def check_csrf(session: AgentSession, submitted: str | None) -> None:
    """Raise `Forbidden` unless `submitted` is the session's CSRF token."""
    if not submitted or not hmac.compare_digest(submitted, session.csrf_token):
        raise Forbidden("missing or wrong CSRF token; reload the page")


async def log_out(deps: Deps, token: str) -> None:
    await deps.agents.end_session(token_hash(token))


async def memberships(deps: Deps, session: AgentSession) -> list[Membership]:
    return await deps.agents.memberships(session.agent_id)


async def switch_hotel(deps: Deps, token: str, session: AgentSession, hotel_id: int) -> Membership:
    """Make `hotel_id` the session's hotel; raises `Forbidden` when the agent does not work
    there."""
    for membership in await deps.agents.memberships(session.agent_id):
        if membership.hotel_id == hotel_id:
            await deps.agents.switch_hotel(token_hash(token), hotel_id)
            return membership
    raise Forbidden("you do not work in that hotel")
