"""Sends paced per WhatsApp sender number, counted in Redis so every worker process shares one
budget: `limits`' moving window (https://limits.readthedocs.io/en/stable/strategies.html),
waited on up to a bound.

Twilio queues messages past a WhatsApp sender's throughput (80 messages per second by default,
up to 400 on request) and fails those that wait in its queue over four hours
(https://www.twilio.com/docs/whatsapp/best-practices-and-faqs), so pacing here keeps a burst of
triggered messages from piling up there, and from meeting 429s.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotelchat.adapters.security import limits_storage
from hotelchat.domain.errors import SendError

log = structlog.get_logger(__name__)

# Shortest and longest pause between two looks at a full window, in seconds.
MIN_PAUSE_SECONDS = 0.005
MAX_PAUSE_SECONDS = 0.5


class RedisSendPacer:
    """`services.ports.SendPacer`: at most `per_second` sends per sender number in any one
    second, across processes. `wait` gives up after `max_wait_seconds` with a retryable
    `SendError`. When Redis does not answer within `timeout` seconds the send goes ahead
    unpaced (logged): Twilio queues excess itself, so a Redis outage must not stop replies."""

    def __init__(
        self, redis: Redis, *, per_second: int, max_wait_seconds: float, timeout: float
    ) -> None:
        self._limiter = MovingWindowRateLimiter(limits_storage(redis, "hotelchat-pace"))
        self._item = RateLimitItemPerSecond(per_second)
        self._max_wait = max_wait_seconds
        self._timeout = timeout

    async def wait(self, sender: str) -> None:
        deadline = time.monotonic() + self._max_wait
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    if await self._limiter.hit(self._item, "whatsapp", sender):
                        return
                    stats = await self._limiter.get_window_stats(self._item, "whatsapp", sender)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("pacing.unavailable", error_class=type(exc).__name__)
                return
            now = time.monotonic()
            if now >= deadline:
                raise SendError("the sender's pace left no slot in time", retryable=True)
            pause = min(MAX_PAUSE_SECONDS, max(MIN_PAUSE_SECONDS, stats.reset_time - time.time()))
            await asyncio.sleep(min(pause, deadline - now))
