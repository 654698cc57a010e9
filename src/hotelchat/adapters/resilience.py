"""Guards on the calls to the model provider that every worker process shares through Redis: a
circuit breaker (a failing provider puts the hotel in outage mode, then one probe at a time finds
out whether it has recovered) and a concurrency limit (at most N calls in flight in the whole
deployment).

Why our own code: no well-kept library fits. pybreaker's and aiobreaker's Redis storages are
synchronous (they would block the event loop); purgatory's Redis repository reads and writes state
in separate, non-atomic commands, has no sliding window, no single half-open probe and no
back-off; aiobreaker-redis (0.1.0) and redis-semaphore-async (0.0.4) are new, untyped and not
atomic either (the latter holds a Redis lock across I/O and waits on pub/sub with no bound);
`limits`, which we use for rate limits, counts hits in a window, not holders at once. Each state
change here is one small Lua script (atomic in Redis), timed by the Redis server's clock so that
processes with skewed clocks agree.

Redis trouble never stops guests getting answers: every Redis call is bounded by `timeout`
seconds, and on any Redis error the breaker fails open (allows the call, reports "closed") and the
limiter lets the caller through, with one warning logged per failed call. No in-process lock is
held anywhere, let alone across I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from hotelchat.domain.errors import TemporaryFailure
from hotelchat.observability import metrics

log = structlog.get_logger(__name__)

BreakerState = Literal["closed", "open", "half_open"]
# Codes the scripts return; they are also the values of `metrics.AI_CIRCUIT_STATE`.
CLOSED, HALF_OPEN, OPEN = 0, 1, 2
_STATE_NAMES: dict[int, BreakerState] = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}

# The Redis server's clock in milliseconds, and the breaker's state from its hash (KEYS[1]).
_NOW_AND_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opened = redis.call('HMGET', KEYS[1], 'opened_at', 'open_ms')
local opened_at, open_ms = tonumber(opened[1]), tonumber(opened[2])
local state = 0
if opened_at then
  if now - opened_at < open_ms then state = 2 else state = 1 end
end
"""

# KEYS: state hash, failures zset, probe key. Returns the state code.
_STATE = _NOW_AND_STATE + "return state\n"

# ARGV: probe token. Returns {state, allowed (0/1)}. Half-open: one SET NX claims the probe, with
# the current open time as its TTL, so a probe whose process died frees the slot by itself.
_ALLOW = (
    _NOW_AND_STATE
    + """
if state == 0 then return {0, 1} end
if state == 2 then return {2, 0} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', open_ms) then return {1, 1} end
return {1, 0}
"""
)

# Returns {state after, 1 when this call closed the breaker}. A success while fully open is a call
# that began before the breaker opened: it proves nothing about now and is ignored.
_SUCCESS = (
    _NOW_AND_STATE
    + """
if state == 2 then return {2, 0} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if state == 1 then return {0, 1} end
return {0, 0}
"""
)

# ARGV: failure token, threshold, window ms, base open ms, max open ms.
# Returns {state after, 1 when this call opened the breaker, open ms}.
_FAILURE = (
    _NOW_AND_STATE
    + """
if state == 2 then return {2, 0, open_ms} end
if state == 1 then
  local next_ms = math.min(open_ms * 2, tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'opened_at', now, 'open_ms', next_ms)
  redis.call('DEL', KEYS[2], KEYS[3])
  return {2, 1, next_ms}
end
local window = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - window))
redis.call('PEXPIRE', KEYS[2], window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'opened_at', now, 'open_ms', ARGV[4])
  redis.call('DEL', KEYS[2], KEYS[3])
  return {2, 1, tonumber(ARGV[4])}
end
return {0, 0, 0}
"""
)

# KEYS: holders zset (member: holder id, score: lease expiry in server ms).
# ARGV: holder id, limit, lease ms. Returns 1 when the holder has a slot. Idempotent per holder,
# so a command the client retries after a dropped connection never takes two slots.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
"""

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisCircuitBreaker:
    """Shared by every process through Redis keys under `hotelchat:breaker:<name>`.

    Closed: every call is allowed; `failure_threshold` failures within `window_seconds` (a
    success in between clears the count) open it. Open: no call is allowed for `open_seconds`;
    then it is half-open and exactly one caller in the deployment gets a probe. The probe's
    success closes it; its failure opens it again for twice the previous open time, at most
    `max_open_seconds` (back to `open_seconds` after a success). A probe that never reports (its
    process died) frees the probe slot after the current open time. Results of calls that began
    before the breaker opened (recorded while it is fully open) are ignored. All durations are
    seconds; every Redis call is bounded by `timeout` seconds.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        failure_threshold: int = 5,
        window_seconds: float = 60.0,
        open_seconds: float = 30.0,
        max_open_seconds: float = 300.0,
        timeout: float = 2.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self._threshold = failure_threshold
        self._window_ms = _ms(window_seconds)
        self._open_ms = _ms(open_seconds)
        self._max_open_ms = max(self._open_ms, _ms(max_open_seconds))
        self._timeout = timeout
        prefix = f"hotelchat:breaker:{name}"
        self._keys = (f"{prefix}:state", f"{prefix}:failures", f"{prefix}:probe")
        self._state_script = redis.register_script(_STATE)
        self._allow_script = redis.register_script(_ALLOW)
        self._success_script = redis.register_script(_SUCCESS)
        self._failure_script = redis.register_script(_FAILURE)

    async def state(self) -> BreakerState:
        """The state now, as every process sees it ("closed" when Redis does not answer)."""
        result = await self._run("state", self._state_script, [])
        if result is None:
            return "closed"
        self._gauge(result[0])
        return _STATE_NAMES[result[0]]

    async def allow(self) -> bool:
        """May a call go to the provider now? Closed: yes. Open: no, until `open_seconds` have
        passed; then, half-open, yes for exactly one caller across all processes (the probe,
        which must report with `record_success` or `record_failure`) and no for the others.
        True when Redis does not answer."""
        result = await self._run("allow", self._allow_script, [secrets.token_hex(8)])
        if result is None:
            return True
        state, allowed = result
        self._gauge(state)
        if state == HALF_OPEN and allowed:
            log.info("breaker.half_open", breaker=self.name)
        return bool(allowed)

    async def record_success(self) -> None:
        """A call succeeded: clear the failure count; a successful probe closes the breaker."""
        result = await self._run("record_success", self._success_script, [])
        if result is None:
            return
        state, closed = result
        self._gauge(state)
        if closed:
            log.info("breaker.closed", breaker=self.name)

    async def record_failure(self) -> None:
        """A call failed: count it in the sliding window, opening the breaker at the threshold;
        a failed probe opens it again for twice the previous open time (capped)."""
        args: list[str | int] = [
            secrets.token_hex(8),
            self._threshold,
            self._window_ms,
            self._open_ms,
            self._max_open_ms,
        ]
        result = await self._run("record_failure", self._failure_script, args)
        if result is None:
            return
        state, opened, open_ms = result
        self._gauge(state)
        if opened:
            log.warning("breaker.opened", breaker=self.name, open_seconds=open_ms / 1000)

    async def _run(
        self, operation: str, script: AsyncScript, args: Sequence[str | int]
    ) -> list[int] | None:
        """Run `script` on the breaker's keys: the integers it returns, or None (and one
        warning) when Redis fails."""
        try:
            async with asyncio.timeout(self._timeout):
                result = await script(keys=self._keys, args=args)
            return [int(v) for v in result] if isinstance(result, list) else [int(result)]
        except _REDIS_ERRORS as exc:
            log.warning(
                "breaker.redis_unavailable",
                breaker=self.name,
                operation=operation,
                error_class=type(exc).__name__,
            )
            return None

    def _gauge(self, state: int) -> None:
        metrics.AI_CIRCUIT_STATE.labels(self.name).set(state)


class ConcurrencyLimitReached(TemporaryFailure):
    """No slot came free in time; the job should be retried after `defer_seconds`."""

    code = "concurrency_limit_reached"


# Waiters poll for a slot every 50-100 ms (jittered, so waiting processes spread their calls).
POLL_SECONDS = (0.05, 0.1)
# A job that found no slot comes back after about this many seconds.
DEFER_SECONDS = 3.0

# Releases that must outlive a cancelled task; held here so they are not garbage collected.
_releases: set[asyncio.Task[None]] = set()


class RedisConcurrencyLimit:
    """At most `limit` holders at once across all processes, under `hotelchat:limit:<name>`.

    Each slot is a lease of `lease_seconds`: a holder whose process crashed frees its slot when
    the lease runs out, so `lease_seconds` must exceed the longest call made inside a slot (a
    holder still working after it may be joined by one holder too many). Every Redis call is
    bounded by `timeout` seconds; when Redis fails the caller goes through unlimited.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        limit: int,
        lease_seconds: float = 120.0,
        timeout: float = 2.0,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.name = name
        self._redis = redis
        self._limit = limit
        self._lease_ms = _ms(lease_seconds)
        self._timeout = timeout
        self._key = f"hotelchat:limit:{name}"
        self._acquire_script = redis.register_script(_ACQUIRE)

    @contextlib.asynccontextmanager
    async def slot(self, *, wait_seconds: float) -> AsyncIterator[None]:
        """Hold one slot for the body: wait up to `wait_seconds` seconds for one, else raise
        `ConcurrencyLimitReached`. Released on exit, whatever ends the body (an exception, a
        cancellation)."""
        holder = secrets.token_hex(16)
        try:
            held = await self._acquire(holder, wait_seconds)
        except asyncio.CancelledError:
            # The acquire may have run in Redis before the cancellation reached us.
            self._release_later(holder)
            raise
        try:
            yield
        finally:
            if held:
                await asyncio.shield(self._release_later(holder))

    async def _acquire(self, holder: str, wait_seconds: float) -> bool:
        """True once `holder` has a slot; False when Redis failed (the caller goes through)."""
        deadline = time.monotonic() + wait_seconds
        args: list[str | int] = [holder, self._limit, self._lease_ms]
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    if await self._acquire_script(keys=[self._key], args=args):
                        return True
            except _REDIS_ERRORS as exc:
                log.warning(
                    "limit.redis_unavailable",
                    limit=self.name,
                    operation="acquire",
                    error_class=type(exc).__name__,
                )
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConcurrencyLimitReached(
                    f"all {self._limit} {self.name} slots are taken",
                    defer_seconds=DEFER_SECONDS,
                )
            await asyncio.sleep(min(remaining, random.uniform(*POLL_SECONDS)))  # noqa: S311

    def _release_later(self, holder: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._release(holder))
        _releases.add(task)
        task.add_done_callback(_releases.discard)
        return task

    async def _release(self, holder: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.zrem(self._key, holder)
        except _REDIS_ERRORS as exc:
            log.warning(
                "limit.redis_unavailable",
                limit=self.name,
                operation="release",
                error_class=type(exc).__name__,
            )
