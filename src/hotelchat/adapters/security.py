"""Security plumbing on well-kept libraries: argon2id password hashes (argon2-cffi), rate limits
shared by every process (limits, moving windows in Redis), signed guest tokens (itsdangerous),
and the stop signal an agent's takeover sends to a reply being generated (a Redis key).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotelchat.domain.errors import Unauthenticated, Unavailable

log = structlog.get_logger(__name__)


class Argon2Passwords:
    """`services.ports.Passwords`: argon2id (RFC 9106) with argon2-cffi's default parameters.
    Verifying costs ~50 ms of CPU, so it runs in a worker thread, off the event loop."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Compared against when the email is unknown, so both cases take the same time.
        self._decoy = self._hasher.hash("decoy password for unknown emails")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches `password_hash` (None: compare against a decoy and
        return False)."""

        def check() -> bool:
            try:
                return bool(self._hasher.verify(password_hash or self._decoy, password))
            except (VerificationError, InvalidHashError):
                return False

        matched = await asyncio.to_thread(check)
        return matched and password_hash is not None


def limits_storage(redis: Redis, key_prefix: str) -> RedisStorage:
    """`limits`' Redis storage on the process's own connection pool (bounded, with timeouts,
    closed with it), its keys under `key_prefix`."""
    return RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=key_prefix,
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


class RedisRateLimiter:
    """`services.ports.RateLimiter`: moving-window limits kept in Redis, so every process counts
    together. Limits are strings such as "5/15 minutes"."""

    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self._limiter = MovingWindowRateLimiter(limits_storage(redis, "hotelchat-limits"))
        self._timeout = timeout

    async def hit(self, key: str, *, limit: str) -> bool:
        """Count one attempt against `limit` for `key`; False when over the limit."""
        return await self._call(self._limiter.hit, key, limit)

    async def allows(self, key: str, *, limit: str) -> bool:
        """True while `key` is under `limit`, without counting anything."""
        return await self._call(self._limiter.test, key, limit)

    async def _call(self, method: Any, key: str, limit: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await method(parse(limit), key))
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable("the rate limiter is unavailable") from exc


class SignedTokens:
    """`services.ports.TokenSigner` with itsdangerous: URL-safe, timestamped, HMAC-signed with
    SECRET_KEY and a per-use salt, so a guest token is never valid as anything else."""

    def __init__(self, secret_key: str) -> None:
        self._secret = secret_key

    def sign(self, purpose: str, data: dict[str, Any]) -> str:
        return str(URLSafeTimedSerializer(self._secret, salt=purpose).dumps(data))

    def verify(self, purpose: str, token: str, *, max_age_seconds: float) -> dict[str, Any]:
        """The data signed into `token`; raises `Unauthenticated` when forged, for another
        purpose, malformed or older than `max_age_seconds`."""
        if len(token) > 1024:
            raise Unauthenticated("token too long")
        serializer = URLSafeTimedSerializer(self._secret, salt=purpose)
        try:
            data = serializer.loads(token, max_age=int(max_age_seconds))
        except SignatureExpired as exc:
            raise Unauthenticated("token expired") from exc
        except BadSignature as exc:
            raise Unauthenticated("bad token") from exc
        if not isinstance(data, dict):
            raise Unauthenticated("bad token")
        return data


class RedisStopSignals:
    """`services.ports.StopSignals`: a short-lived Redis key per conversation that a reply being
    generated checks between chunks, so an agent's takeover stops it at once."""

    TTL_SECONDS = 300

    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self._redis = redis
        self._timeout = timeout

    @staticmethod
    def _key(conversation_id: int) -> str:
        return f"hotelchat:stop-ai:{conversation_id}"

    async def stop(self, conversation_id: int) -> None:
        await self._run(self._redis.set(self._key(conversation_id), b"1", ex=self.TTL_SECONDS))

    async def clear(self, conversation_id: int) -> None:
        await self._run(self._redis.delete(self._key(conversation_id)))

    async def stopped(self, conversation_id: int) -> bool:
        return bool(await self._run(self._redis.exists(self._key(conversation_id))))

    async def _run(self, command: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await command
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("stop_signal.unavailable", error_class=type(exc).__name__)
            return None
