"""The arq worker: every slow thing (the model, Twilio sends) runs here, one line into a service.

A service raises `TemporaryFailure` for work worth retrying, or `Unavailable` when PostgreSQL or
Redis does not answer; the worker turns both into arq's `Retry(defer=…)`, bounded by
`JOB_MAX_TRIES`. Each minute a cron job queues again any reply or
send that a crash or a queue outage left without a job, and samples the queue and handoff gauges
(every 15 seconds). Journey messages due are queued every 30 seconds, and templates synced
from Twilio's Content API every 30 minutes. Each job attempt is a span of the trace it was
queued in (the context travels in its `trace` argument), timed and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from arq import Retry, Worker, cron, func
from arq.connections import ArqRedis
from opentelemetry.trace import SpanKind

from hotelchat import bootstrap
from hotelchat.adapters.queue import (
    EMBED_JOB,
    MEDIA_JOB,
    REDIS_ERRORS,
    REPLY_JOB,
    SEND_JOB,
    InProgressLease,
    create_redis,
)
from hotelchat.config import Settings
from hotelchat.domain.errors import TemporaryFailure, Unavailable
from hotelchat.entrypoints.probes import ProbeServer
from hotelchat.entrypoints.process import settle_heap
from hotelchat.observability import metrics, tracing
from hotelchat.services import (
    journeys,
    knowledge,
    leases,
    maintenance,
    media,
    outbound,
    replies,
    templates,
)
from hotelchat.services.ports import Deps

log = structlog.get_logger(__name__)
T = TypeVar("T")

# How long a stopping worker lets running jobs finish before cancelling them (they are retried).
SHUTDOWN_GRACE_SECONDS = 20


# A worker whose Redis is gone restarts its loop after 0.5 s, then up to every 5 s, for at most
# five minutes of outage.
REDIS_RESTART_BACKOFF_SECONDS = (0.5, 5.0)
MAX_REDIS_OUTAGE_SECONDS = 300.0

# A job that met an unreachable PostgreSQL or Redis tries again after this many seconds.
UNAVAILABLE_RETRY_SECONDS = 5.0
QUEUE = "arq:queue"

# The liveness probe fails when arq's loop has not gone round for this long (it goes round every
# 0.1 s, whatever the jobs are doing, since it starts them as tasks).
STALE_LOOP_SECONDS = 60.0


class Liveness:
    """Whether the worker is alive: arq's loop went round lately, or the worker is waiting out a
    Redis outage (restarting the pod would not bring Redis back; `run_worker` gives up by
    itself after `MAX_REDIS_OUTAGE_SECONDS`)."""

    def __init__(self) -> None:
        self.last_beat = time.monotonic()
        self.waiting_for_redis = False

    def beat(self) -> None:
        self.last_beat = time.monotonic()
        self.waiting_for_redis = False

    def problem(self) -> str | None:
        """None while alive, else why not."""
        if self.waiting_for_redis:
            return None
        silent = time.monotonic() - self.last_beat
        if silent > STALE_LOOP_SECONDS:
            return f"the job loop has not run for {silent:.0f} s"
        return None


class HotelChatWorker(Worker):
    """arq's worker, telling `liveness` each time its loop goes round, and `stopping` when it
    gets SIGINT or SIGTERM (so `run_worker` does not start its loop again after an outage)."""

    def __init__(
        self,
        *args: Any,
        liveness: Liveness | None = None,
        stopping: asyncio.Event | None = None,
        **kwargs: Any,
    ) -> None:
        # Set before arq's __init__, which installs the signal handlers below.
        self.liveness = liveness or Liveness()
        self.stopping = stopping or asyncio.Event()
        super().__init__(*args, **kwargs)

    async def heart_beat(self) -> None:
        self.liveness.beat()
        await super().heart_beat()

    def handle_sig(self, signum: Any) -> None:
        self.stopping.set()
        super().handle_sig(signum)

    def handle_sig_wait_for_completion(self, signum: Any) -> None:
        self.stopping.set()
        super().handle_sig_wait_for_completion(signum)


async def _retrying(work: Awaitable[T]) -> T:
    """The one place job failures become arq retries (bounded by the job's `max_tries`)."""
    try:
        return await work
    except TemporaryFailure as exc:
        raise Retry(defer=exc.defer_seconds) from exc
    except Unavailable as exc:
        log.warning("job.dependency_unavailable", error=exc.message)
        raise Retry(defer=UNAVAILABLE_RETRY_SECONDS) from exc


async def _job(
    ctx: dict[str, Any], name: str, work: Awaitable[T], trace: dict[str, str] | None
) -> T:
    """Run one job attempt as a span of the trace it was queued in, timed and counted."""
    started = time.time()
    due = ctx.get("score")
    if isinstance(due, int | float):
        metrics.JOB_WAIT.labels(name).observe(max(0.0, started - due / 1000))
    outcome = "failed"
    attributes = {"messaging.system": "arq", "messaging.operation.type": "process",
                  "hotelchat.job.try": int(ctx.get("job_try") or 1)}  # fmt: skip
    try:
        with tracing.span(f"job {name}", kind=SpanKind.CONSUMER, attributes=attributes,
                          parent=trace):  # fmt: skip
            async with _in_progress_kept(ctx):
                result = await _retrying(work)
    except (Retry, asyncio.CancelledError):
        outcome = "retry"  # arq runs it again (a cancelled job is a timeout or a shutdown)
        raise
    else:
        outcome = "success"
        return result
    finally:
        metrics.JOB_DURATION.labels(name).observe(time.time() - started)
        metrics.JOBS.labels(name, outcome).inc()


@contextlib.asynccontextmanager
async def _in_progress_kept(ctx: dict[str, Any]) -> AsyncIterator[None]:
    """Hold arq's in-progress key of the running job for REPLY_LEASE_SECONDS at a time instead
    of arq's job timeout + 10 s, so a job of a worker killed outright runs again elsewhere
    within that time (`adapters.queue.InProgressLease`)."""
    redis, job_id = ctx.get("redis"), ctx.get("job_id")
    if not isinstance(redis, ArqRedis) or not isinstance(job_id, str):
        yield  # called outside arq (tests)
        return
    settings: Settings = ctx["settings"]
    lease = InProgressLease(redis, job_id, lease_seconds=settings.reply_lease_seconds)
    try:
        async with asyncio.timeout(settings.redis_timeout_seconds):
            await lease.renew()
    except (Unavailable, TimeoutError) as exc:
        log.warning("lease.renewal_failed", lease="job", error_class=type(exc).__name__)
    async with leases.kept_alive(
        lease.renew,
        every=leases.renew_every(settings.reply_lease_seconds),
        for_at_most=settings.job_timeout_seconds,
        what="job",
    ):
        yield


def _container(ctx: dict[str, Any]) -> bootstrap.Container:
    container: bootstrap.Container = ctx["container"]
    return container


async def reply_to_inbound(
    ctx: dict[str, Any], hotel_id: int, message_id: int, trace: dict[str, str] | None = None
) -> str:
    """Job: answer inbound message `message_id` of hotel `hotel_id`."""
    work = replies.reply_to_inbound(_container(ctx).deps, hotel_id, message_id)
    return await _job(ctx, REPLY_JOB, work, trace)


async def send_outbound(
    ctx: dict[str, Any], hotel_id: int, message_id: int, trace: dict[str, str] | None = None
) -> str:
    """Job: send outbound message `message_id` of hotel `hotel_id`."""
    work = outbound.send_outbound(_container(ctx).deps, hotel_id, message_id)
    return await _job(ctx, SEND_JOB, work, trace)


async def download_media(
    ctx: dict[str, Any], hotel_id: int, message_id: int, trace: dict[str, str] | None = None
) -> str:
    """Job: fetch inbound message `message_id`'s media from Twilio into object storage."""
    work = media.download_media(_container(ctx).deps, hotel_id, message_id)
    return await _job(ctx, MEDIA_JOB, work, trace)


async def embed_knowledge(
    ctx: dict[str, Any], hotel_id: int, _unused: int = 0, trace: dict[str, str] | None = None
) -> int:
    """Job: compute the vectors of hotel `hotel_id`'s new or edited knowledge-base entries."""
    work = knowledge.embed_pending(_container(ctx).deps, hotel_id)
    return await _job(ctx, EMBED_JOB, work, trace)


async def every_15_seconds(ctx: dict[str, Any]) -> int:
    """Cron job: queue again work left without a job, and sample the gauges of the queue, of
    handoffs waiting for a human and of each hotel's AI budget."""
    settings: Settings = ctx["settings"]
    container = _container(ctx)
    await sample_queue(container)
    for slug, waiting in await container.store.oldest_awaiting_human():
        metrics.HANDOFF_OLDEST_UNANSWERED.labels(slug).set(waiting)
    deps = container.deps
    await sample_budgets(deps)
    if deps.embeddings is not None:
        # Entries an edit's job missed (queued while a run was under way, or Redis was down).
        for hotel_id in await deps.knowledge_base.hotels_to_embed(deps.embeddings.model):
            await deps.jobs.enqueue_embedding(hotel_id)
    await media.requeue_stalled(deps, min_age_seconds=settings.sweeper_min_age_seconds)
    return await maintenance.requeue_stalled(
        container.deps, min_age_seconds=settings.sweeper_min_age_seconds
    )


async def run_journeys(ctx: dict[str, Any]) -> int:
    """Cron job: queue the journey messages due now (each once per reservation); with
    PostgreSQL or Redis down, nothing is claimed and the next run tries again."""
    try:
        return await journeys.run_due(_container(ctx).deps, datetime.now(UTC))
    except Unavailable as exc:
        log.warning("journeys.unavailable", error=exc.message)
        return 0


async def sync_templates(ctx: dict[str, Any]) -> int:
    """Cron job: sync every hotel's templates from its Twilio account's Content API."""
    try:
        return await templates.sync_all(_container(ctx).deps)
    except Unavailable as exc:
        log.warning("templates.unavailable", error=exc.message)
        return 0


async def sample_budgets(deps: Deps) -> None:
    """The share of each hotel's monthly AI budget spent (its month, in its time zone); 0 for a
    hotel without a budget, so a budget removed does not leave its last share behind."""
    for slug, spend in await deps.hotels.all_spend():
        metrics.AI_BUDGET_USED.labels(slug).set(spend.used or 0.0)


async def sample_queue(container: bootstrap.Container) -> None:
    """Queue depth, and the age of the oldest job that is due but not started."""
    now_ms = time.time() * 1000
    depth = await container.redis.zcard(QUEUE)
    oldest = await container.redis.zrangebyscore(
        QUEUE, min=float("-inf"), max=now_ms, start=0, num=1, withscores=True
    )
    metrics.QUEUE_DEPTH.labels(QUEUE).set(depth)
    age = (now_ms - oldest[0][1]) / 1000 if oldest else 0.0
    metrics.QUEUE_OLDEST_AGE.labels(QUEUE).set(max(0.0, age))


async def _startup(ctx: dict[str, Any]) -> None:
    ctx["container"] = await bootstrap.build(ctx["settings"], require_keys=True)
    if ctx.get("settle_heap"):
        settle_heap()
    log.info("worker.started")


async def _shutdown(ctx: dict[str, Any]) -> None:
    container = ctx.pop("container", None)
    if container is not None:
        await container.close()
    log.info("worker.stopped")


def create_worker(
    settings: Settings,
    redis: ArqRedis,
    *,
    burst: bool = False,
    liveness: Liveness | None = None,
    stopping: asyncio.Event | None = None,
    settle: bool = False,
) -> HotelChatWorker:
    """An arq `Worker` for HotelChat's jobs on `redis`, beating `liveness`. With `burst`, it
    stops once the queue is empty (tests). With `settle` (the `worker` command), the heap is
    settled once the container is open (`entrypoints.process.settle_heap`)."""
    tries = settings.job_max_tries
    return HotelChatWorker(
        functions=[
            func(reply_to_inbound, name=REPLY_JOB, keep_result=0, max_tries=tries),
            func(send_outbound, name=SEND_JOB, keep_result=0, max_tries=tries),
            func(embed_knowledge, name=EMBED_JOB, keep_result=0, max_tries=tries),
            func(download_media, name=MEDIA_JOB, keep_result=0, max_tries=tries),
        ],
        cron_jobs=[
            cron(every_15_seconds, second={0, 15, 30, 45}, run_at_startup=True, keep_result=0),
            cron(run_journeys, second={5, 35}, run_at_startup=True, keep_result=0),
            cron(sync_templates, minute={7, 37}, second=20, keep_result=0),
        ],
        redis_pool=redis,
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings, "settle_heap": settle},
        max_jobs=settings.worker_max_jobs,
        job_timeout=settings.job_timeout_seconds,
        keep_result=0,
        poll_delay=0.1,
        burst=burst,
        handle_signals=not burst,
        job_completion_wait=SHUTDOWN_GRACE_SECONDS,
        liveness=liveness,
        stopping=stopping,
    )


async def run_worker(settings: Settings) -> None:
    """Run the worker until SIGINT or SIGTERM, then let running jobs finish (up to 20 s). Its
    metrics and liveness probe (/metrics, /healthz) are served on WORKER_METRICS_HOST:PORT.

    A Redis outage stops arq's loop (its client does not retry opening a connection); the loop is
    started again, with a backoff of up to `REDIS_RESTART_BACKOFF_SECONDS[1]` seconds, for as long
    as the outage lasts up to `MAX_REDIS_OUTAGE_SECONDS`; past that the worker exits with the error
    for its supervisor (Kubernetes) to restart it. Jobs interrupted by the restart are retried by
    arq, and the sweeper queues again any reply or send left without a job."""
    tracing.configure("hotelchat-worker")
    liveness = Liveness()
    probes = None
    if settings.worker_metrics_port:
        probes = ProbeServer(settings.worker_metrics_host, settings.worker_metrics_port,
                             liveness.problem)  # fmt: skip
        await probes.start()
    try:
        await _run_worker_loop(settings, liveness)
    finally:
        if probes is not None:
            await probes.stop()


async def _run_worker_loop(settings: Settings, liveness: Liveness) -> None:
    outage_began: float | None = None
    backoff = REDIS_RESTART_BACKOFF_SECONDS[0]
    stopping = asyncio.Event()
    while True:
        redis = create_redis(
            settings.require_redis_url(),
            timeout=settings.redis_timeout_seconds,
            max_connections=bootstrap.redis_connections(settings),
        )
        worker = create_worker(settings, redis, liveness=liveness, stopping=stopping, settle=True)
        started = time.monotonic()
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            return
        except REDIS_ERRORS as exc:
            now = time.monotonic()
            if now - started > MAX_REDIS_OUTAGE_SECONDS:
                outage_began, backoff = None, REDIS_RESTART_BACKOFF_SECONDS[0]  # ran fine a while
            outage_began = outage_began or now
            if now - outage_began > MAX_REDIS_OUTAGE_SECONDS:
                raise
            liveness.waiting_for_redis = True
            log.warning(
                "worker.redis_unavailable",
                error_class=type(exc).__name__,
                restart_in_seconds=backoff,
            )
        else:
            return
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS + 10):
                    await worker.close()
            # What close() could not do with Redis gone (it stops at its first Redis command):
            # close the container, drop the sockets. Neither needs the server.
            await _shutdown(worker.ctx)
            await redis.connection_pool.disconnect()
        if stopping.is_set() or await _stopped_within(backoff, stopping):
            log.info("worker.stopped_during_outage")
            return
        backoff = min(backoff * 2, REDIS_RESTART_BACKOFF_SECONDS[1])


async def _stopped_within(seconds: float, stop: asyncio.Event) -> bool:
    """Wait `seconds`, or less if SIGINT or SIGTERM comes (arq's own handlers are gone with its
    loop, so without these a pod stopped during an outage would wait for its SIGKILL)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return True
