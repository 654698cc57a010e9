"""The arq worker: every slow thing (the model, Twilio sends) runs here, one line into a service.

A service raises `TemporaryFailure` for work worth retrying, or `Unavailable` when PostgreSQL or
Redis does not answer; the worker turns both into arq's `Retry(defer=…)`, bounded by
`JOB_MAX_TRIES`. Each minute a cron job queues again any reply or
send that a crash or a queue outage left without a job (every 15 seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog
from arq import Retry, Worker, cron, func
from arq.connections import ArqRedis

from hotelchat import bootstrap
from hotelchat.adapters.queue import REPLY_JOB, SEND_JOB, create_redis
from hotelchat.config import Settings
from hotelchat.domain.errors import TemporaryFailure, Unavailable
from hotelchat.services import maintenance, outbound, replies

log = structlog.get_logger(__name__)
T = TypeVar("T")

# How long a stopping worker lets running jobs finish before cancelling them (they are retried).
SHUTDOWN_GRACE_SECONDS = 20


# A job that met an unreachable PostgreSQL or Redis tries again after this many seconds.
UNAVAILABLE_RETRY_SECONDS = 5.0


async def _retrying(work: Awaitable[T]) -> T:
    """The one place job failures become arq retries (bounded by the job's `max_tries`)."""
    try:
        return await work
    except TemporaryFailure as exc:
        raise Retry(defer=exc.defer_seconds) from exc
    except Unavailable as exc:
        log.warning("job.dependency_unavailable", error=exc.message)
        raise Retry(defer=UNAVAILABLE_RETRY_SECONDS) from exc


def _container(ctx: dict[str, Any]) -> bootstrap.Container:
    container: bootstrap.Container = ctx["container"]
    return container


async def reply_to_inbound(ctx: dict[str, Any], hotel_id: int, message_id: int) -> str:
    """Job: answer inbound message `message_id` of hotel `hotel_id`."""
    return await _retrying(replies.reply_to_inbound(_container(ctx).deps, hotel_id, message_id))


async def send_outbound(ctx: dict[str, Any], hotel_id: int, message_id: int) -> str:
    """Job: send outbound message `message_id` of hotel `hotel_id`."""
    return await _retrying(outbound.send_outbound(_container(ctx).deps, hotel_id, message_id))


async def requeue_stalled(ctx: dict[str, Any]) -> int:
    """Cron job: queue work left without a job."""
    settings: Settings = ctx["settings"]
    return await maintenance.requeue_stalled(
        _container(ctx).deps, min_age_seconds=settings.sweeper_min_age_seconds
    )


async def _startup(ctx: dict[str, Any]) -> None:
    ctx["container"] = await bootstrap.build(ctx["settings"])
    log.info("worker.started")


async def _shutdown(ctx: dict[str, Any]) -> None:
    container = ctx.pop("container", None)
    if container is not None:
        await container.close()
    log.info("worker.stopped")


def create_worker(settings: Settings, redis: ArqRedis, *, burst: bool = False) -> Worker:
    """An arq `Worker` for HotelChat's jobs on `redis`. With `burst`, it stops once the queue is
    empty (tests)."""
    tries = settings.job_max_tries
    return Worker(
        functions=[
            func(reply_to_inbound, name=REPLY_JOB, keep_result=0, max_tries=tries),
            func(send_outbound, name=SEND_JOB, keep_result=0, max_tries=tries),
        ],
        cron_jobs=[
            cron(requeue_stalled, second={0, 15, 30, 45}, run_at_startup=True, keep_result=0)
        ],
        redis_pool=redis,
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings},
        max_jobs=settings.worker_max_jobs,
        job_timeout=settings.job_timeout_seconds,
        keep_result=0,
        poll_delay=0.1,
        burst=burst,
        handle_signals=not burst,
        job_completion_wait=SHUTDOWN_GRACE_SECONDS,
    )


async def run_worker(settings: Settings) -> None:
    """Run the worker until SIGINT or SIGTERM, then let running jobs finish (up to 20 s)."""
    redis = create_redis(settings.require_redis_url(), timeout=settings.redis_timeout_seconds)
    worker = create_worker(settings, redis)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass
    finally:
        await worker.close()
