"""The circuit breaker and the concurrency limit on the model provider, on real Redis: shared by
separate clients as separate worker processes share them, exact under concurrency, and failing
open (never raising, never hanging) when Redis is gone."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from prometheus_client import REGISTRY

from hotelchat.adapters.embedded import free_port
from hotelchat.adapters.queue import create_redis
from hotelchat.adapters.resilience import (
    ConcurrencyLimitReached,
    RedisCircuitBreaker,
    RedisConcurrencyLimit,
)
from hotelchat.domain.errors import TemporaryFailure
from tests.conftest import Backing


@pytest.fixture
async def redis(backing: Backing) -> AsyncIterator[ArqRedis]:
    client = create_redis(backing.redis_url, timeout=2)
    yield client
    await client.aclose()


@pytest.fixture
async def other_redis(backing: Backing) -> AsyncIterator[ArqRedis]:
    """A second client: its own connections, as another worker process has."""
    client = create_redis(backing.redis_url, timeout=2)
    yield client
    await client.aclose()


@pytest.fixture
async def dead_redis() -> AsyncIterator[ArqRedis]:
    """A client of a port where nothing listens."""
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=2)
    yield client
    await client.aclose()


@pytest.fixture
async def silent_redis() -> AsyncIterator[ArqRedis]:
    """A client of a server that accepts connections and never answers (a hung Redis)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = create_redis(f"redis://127.0.0.1:{port}/0", timeout=2)
    yield client
    await client.aclose()
    server.close()
    await server.wait_closed()


def unique() -> str:
    """A breaker or limit name of its own, so no test sees another's keys or gauge."""
    return f"test-{uuid.uuid4().hex[:8]}"


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("hotelchat_ai_circuit_state", {"provider": name})


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    return [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == event
    ]


# --- Circuit breaker -----------------------------------------------------------------------------


async def test_the_breaker_opens_at_the_threshold_within_the_window(
    redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    breaker = RedisCircuitBreaker(redis, name, failure_threshold=3, window_seconds=5)
    assert await breaker.state() == "closed"
    assert gauge(name) == 0
    await breaker.record_failure()
    await breaker.record_failure()
    assert await breaker.allow()
    assert await breaker.state() == "closed"
    await breaker.record_failure()
    assert await breaker.state() == "open"
    assert gauge(name) == 2
    assert not any(await asyncio.gather(*(breaker.allow() for _ in range(10))))
    (opened,) = events(caplog, "breaker.opened")
    assert opened["breaker"] == name
    assert opened["open_seconds"] == 30.0


async def test_failures_spread_beyond_the_window_do_not_open_it(redis: ArqRedis) -> None:
    breaker = RedisCircuitBreaker(redis, unique(), failure_threshold=3, window_seconds=0.3)
    await breaker.record_failure()
    await breaker.record_failure()
    await asyncio.sleep(0.4)  # both fall out of the window
    await breaker.record_failure()
    assert await breaker.state() == "closed"
    await breaker.record_failure()
    await breaker.record_failure()  # three within 0.3 s
    assert await breaker.state() == "open"


async def test_a_success_clears_the_failure_count(redis: ArqRedis) -> None:
    breaker = RedisCircuitBreaker(redis, unique(), failure_threshold=3)
    for _ in range(2):
        await breaker.record_failure()
        await breaker.record_failure()
        await breaker.record_success()
    assert await breaker.state() == "closed"
    assert await breaker.allow()


async def test_exactly_one_concurrent_caller_gets_the_probe(
    redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    breaker = RedisCircuitBreaker(redis, name, failure_threshold=1, open_seconds=0.3)
    await breaker.record_failure()
    assert not await breaker.allow()
    await asyncio.sleep(0.35)
    assert await breaker.state() == "half_open"
    assert gauge(name) == 1
    allowed = await asyncio.gather(*(breaker.allow() for _ in range(20)))
    assert allowed.count(True) == 1
    assert await breaker.state() == "half_open"
    assert [e["breaker"] for e in events(caplog, "breaker.half_open")] == [name]


async def test_two_processes_share_the_state_and_the_single_probe(
    redis: ArqRedis, other_redis: ArqRedis
) -> None:
    name = unique()
    first = RedisCircuitBreaker(redis, name, failure_threshold=2, open_seconds=0.3)
    second = RedisCircuitBreaker(other_redis, name, failure_threshold=2, open_seconds=0.3)
    await first.record_failure()
    await second.record_failure()  # the two processes' failures count together
    assert not await first.allow()
    assert not await second.allow()
    await asyncio.sleep(0.35)
    allowed = await asyncio.gather(
        *(breaker.allow() for _ in range(10) for breaker in (first, second))
    )
    assert allowed.count(True) == 1
    await second.record_success()
    assert await first.state() == "closed"
    assert await first.allow()


async def test_a_successful_probe_closes_the_breaker(
    redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    breaker = RedisCircuitBreaker(redis, name, failure_threshold=1, open_seconds=0.2)
    await breaker.record_failure()
    await asyncio.sleep(0.25)
    assert await breaker.allow()
    await breaker.record_success()
    assert await breaker.state() == "closed"
    assert gauge(name) == 0
    assert all(await asyncio.gather(*(breaker.allow() for _ in range(5))))
    assert [e["breaker"] for e in events(caplog, "breaker.closed")] == [name]


async def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap(
    redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    breaker = RedisCircuitBreaker(
        redis, name, failure_threshold=1, open_seconds=0.2, max_open_seconds=0.5
    )
    await breaker.record_failure()  # open for 0.2 s
    await asyncio.sleep(0.25)
    assert await breaker.allow()
    await breaker.record_failure()  # the probe failed: open for 0.4 s
    assert gauge(name) == 2
    await asyncio.sleep(0.25)
    assert not await breaker.allow()
    await asyncio.sleep(0.2)
    assert await breaker.allow()
    await breaker.record_failure()  # open for 0.8 s, capped at 0.5 s
    await asyncio.sleep(0.4)
    assert not await breaker.allow()
    await asyncio.sleep(0.15)
    assert await breaker.allow()
    await breaker.record_success()  # closed: the next opening is back to 0.2 s
    await breaker.record_failure()
    await asyncio.sleep(0.25)
    assert await breaker.allow()
    opened = [e["open_seconds"] for e in events(caplog, "breaker.opened")]
    assert opened == [0.2, 0.4, 0.5, 0.2]


async def test_a_probe_that_never_reports_frees_the_slot(redis: ArqRedis) -> None:
    breaker = RedisCircuitBreaker(redis, unique(), failure_threshold=1, open_seconds=0.2)
    await breaker.record_failure()
    await asyncio.sleep(0.25)
    assert await breaker.allow()  # this probe's process dies
    assert not await breaker.allow()
    await asyncio.sleep(0.25)
    assert await breaker.allow()


async def test_results_of_calls_begun_before_it_opened_are_ignored(redis: ArqRedis) -> None:
    breaker = RedisCircuitBreaker(redis, unique(), failure_threshold=1, open_seconds=0.3)
    await breaker.record_failure()
    await breaker.record_success()  # a slow call that started while it was closed
    await breaker.record_failure()  # another: does not lengthen the open time
    assert await breaker.state() == "open"
    await asyncio.sleep(0.35)
    assert await breaker.allow()


async def test_the_breaker_fails_open_without_redis(
    dead_redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    breaker = RedisCircuitBreaker(dead_redis, name, failure_threshold=1, timeout=0.3)
    started = time.monotonic()
    assert await breaker.allow()
    await breaker.record_failure()
    assert await breaker.state() == "closed"
    await breaker.record_success()
    assert await breaker.allow()
    assert time.monotonic() - started < 5 * 0.3 + 1.0
    warnings = events(caplog, "breaker.redis_unavailable")
    assert [w["operation"] for w in warnings] == [
        "allow", "record_failure", "state", "record_success", "allow",
    ]  # fmt: skip
    assert gauge(name) is None  # nothing is known, so nothing is reported


# --- Concurrency limit ---------------------------------------------------------------------------


async def test_a_third_holder_waits_for_a_released_slot(redis: ArqRedis) -> None:
    limit = RedisConcurrencyLimit(redis, unique(), limit=2)
    release = [asyncio.Event(), asyncio.Event()]
    holding = [asyncio.Event(), asyncio.Event()]

    async def hold(index: int) -> None:
        async with limit.slot(wait_seconds=1):
            holding[index].set()
            await release[index].wait()

    holders = [asyncio.create_task(hold(i)) for i in range(2)]
    await asyncio.gather(*(h.wait() for h in holding))
    third_in = asyncio.Event()

    async def third() -> float:
        async with limit.slot(wait_seconds=5):
            third_in.set()
            return time.monotonic()

    waiter = asyncio.create_task(third())
    await asyncio.sleep(0.3)
    assert not third_in.is_set()
    released_at = time.monotonic()
    release[0].set()
    entered_at = await waiter
    assert entered_at - released_at < 0.5  # it polls every 50-100 ms
    release[1].set()
    await asyncio.gather(*holders)


async def test_no_slot_within_the_wait_raises_a_temporary_failure(redis: ArqRedis) -> None:
    limit = RedisConcurrencyLimit(redis, unique(), limit=1)
    async with limit.slot(wait_seconds=0):
        started = time.monotonic()
        with pytest.raises(ConcurrencyLimitReached) as raised:
            async with limit.slot(wait_seconds=0.3):
                pytest.fail("entered a slot over the limit")
        assert 0.3 <= time.monotonic() - started < 1.0
    assert isinstance(raised.value, TemporaryFailure)
    assert 1.0 <= raised.value.defer_seconds <= 10.0
    async with limit.slot(wait_seconds=0):  # the failed wait took nothing
        pass


async def test_never_more_holders_than_the_limit(redis: ArqRedis) -> None:
    limit = RedisConcurrencyLimit(redis, unique(), limit=3)
    inside = 0
    most = 0

    async def work() -> None:
        nonlocal inside, most
        async with limit.slot(wait_seconds=5):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(12)))
    assert most == 3


async def test_a_slot_is_released_when_the_body_raises(redis: ArqRedis) -> None:
    name = unique()
    limit = RedisConcurrencyLimit(redis, name, limit=1)
    with pytest.raises(RuntimeError, match="boom"):
        async with limit.slot(wait_seconds=0):
            raise RuntimeError("boom")
    assert await redis.zcard(f"hotelchat:limit:{name}") == 0
    async with limit.slot(wait_seconds=0):
        pass


async def test_a_slot_is_released_when_the_task_is_cancelled(redis: ArqRedis) -> None:
    name = unique()
    limit = RedisConcurrencyLimit(redis, name, limit=1)
    inside = asyncio.Event()

    async def hold(wait: float) -> None:
        async with limit.slot(wait_seconds=wait):
            inside.set()
            await asyncio.sleep(60)

    holder = asyncio.create_task(hold(0))
    await inside.wait()
    # A second task cancelled while it waits for the slot leaves nothing behind either.
    waiter = asyncio.create_task(hold(5))
    await asyncio.sleep(0.2)
    waiter.cancel()
    holder.cancel()
    for task in (holder, waiter):
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.1)  # the waiter's release runs in the background, off its cancellation
    assert await redis.zcard(f"hotelchat:limit:{name}") == 0
    async with limit.slot(wait_seconds=0):
        pass


CRASHING_HOLDER = """
import asyncio, os, sys
from hotelchat.adapters.queue import create_redis
from hotelchat.adapters.resilience import RedisConcurrencyLimit

async def main() -> None:
    redis = create_redis(sys.argv[1], timeout=2)
    limit = RedisConcurrencyLimit(redis, sys.argv[2], limit=1, lease_seconds=float(sys.argv[3]))
    await limit.slot(wait_seconds=5).__aenter__()
    print("holding", flush=True)
    os._exit(0)  # dies holding the slot: no finally, no release

asyncio.run(main())
"""


async def test_the_lease_of_a_crashed_holder_is_reclaimed(
    redis: ArqRedis, backing: Backing
) -> None:
    name = unique()
    lease = 1.0
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_HOLDER, backing.redis_url, name, str(lease),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    assert await child.stdout.readline() == b"holding\n"
    held_at = time.monotonic()
    assert await child.wait() == 0
    limit = RedisConcurrencyLimit(redis, name, limit=1, lease_seconds=lease)
    with pytest.raises(ConcurrencyLimitReached):
        async with limit.slot(wait_seconds=0):
            pass
    async with limit.slot(wait_seconds=5):
        assert time.monotonic() - held_at < lease + 0.5


async def test_two_processes_share_the_limit(redis: ArqRedis, other_redis: ArqRedis) -> None:
    name = unique()
    first = RedisConcurrencyLimit(redis, name, limit=1)
    second = RedisConcurrencyLimit(other_redis, name, limit=1)
    async with first.slot(wait_seconds=0):
        with pytest.raises(ConcurrencyLimitReached):
            async with second.slot(wait_seconds=0.2):
                pass
    async with second.slot(wait_seconds=0):
        with pytest.raises(ConcurrencyLimitReached):
            async with first.slot(wait_seconds=0):
                pass


async def test_the_limit_lets_callers_through_without_redis(
    dead_redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    limit = RedisConcurrencyLimit(dead_redis, unique(), limit=1, timeout=0.3)
    started = time.monotonic()
    entered = 0
    for _ in range(2):
        async with limit.slot(wait_seconds=5):
            entered += 1
    assert entered == 2
    assert time.monotonic() - started < 2 * 0.3 + 1.0
    warnings = events(caplog, "limit.redis_unavailable")
    assert [w["operation"] for w in warnings] == ["acquire", "acquire"]


async def test_a_redis_that_never_answers_costs_each_call_at_most_the_timeout(
    silent_redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = RedisCircuitBreaker(silent_redis, unique(), timeout=0.3)
    limit = RedisConcurrencyLimit(silent_redis, unique(), limit=1, timeout=0.3)
    started = time.monotonic()
    assert await breaker.allow()
    assert time.monotonic() - started < 0.6
    started = time.monotonic()
    async with limit.slot(wait_seconds=5):
        assert time.monotonic() - started < 0.6
    errors = [e["error_class"] for e in events(caplog, "breaker.redis_unavailable")]
    errors += [e["error_class"] for e in events(caplog, "limit.redis_unavailable")]
    assert errors == ["TimeoutError", "TimeoutError"]
