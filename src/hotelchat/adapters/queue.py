"""Background jobs on arq (Redis). Job ids are derived from the message, so enqueueing the same
work twice while it is queued or running is a no-op; PostgreSQL, not the job id, is what makes the
work itself idempotent."""

from __future__ import annotations

import asyncio

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hotelchat.domain.errors import Unavailable
from hotelchat.observability import tracing

REPLY_JOB = "reply_to_inbound"
SEND_JOB = "send_outbound"
EMBED_JOB = "embed_knowledge"
MEDIA_JOB = "download_media"


# A dropped connection or a Redis restart is retried inside the client: 12 attempts with
# exponential backoff capped at 5 s ride out about a minute of outage. Callers on request paths
# bound their own wait. The client does not retry opening a new connection, though (redis-py
# checks out a connection before its retry loop), so the worker restarts its loop on these too.
RETRY = Retry(ExponentialBackoff(cap=5.0, base=0.2), retries=12)
# What a Redis outage raises, for callers that ride it out.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def create_redis(url: str, *, timeout: float, max_connections: int = 50) -> ArqRedis:
    """A Redis client (arq's subclass) whose every connect and command is bounded by `timeout`
    seconds, with at most `max_connections` connections, and bounded retries (see `RETRY`)."""
    redis: ArqRedis = ArqRedis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        max_connections=max_connections,
        retry=RETRY,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return redis


class ArqJobQueue:
    """`services.ports.JobQueue` on arq."""

    def __init__(self, redis: ArqRedis, *, timeout: float) -> None:
        self._redis = redis
        self._timeout = timeout

    async def enqueue_reply(self, hotel_id: int, message_id: int) -> None:
        """Queue the reply to inbound message `message_id`; raises `Unavailable`."""
        await self._enqueue(REPLY_JOB, hotel_id, message_id, f"reply:{message_id}")

    async def enqueue_send(self, hotel_id: int, message_id: int) -> None:
        """Queue the send of outbound message `message_id`; raises `Unavailable`."""
        await self._enqueue(SEND_JOB, hotel_id, message_id, f"send:{message_id}")

    async def enqueue_embedding(self, hotel_id: int) -> None:
        """Queue computing the vectors of hotel `hotel_id`'s new or edited entries."""
        await self._enqueue(EMBED_JOB, hotel_id, 0, f"embed:{hotel_id}")

    async def enqueue_media(self, hotel_id: int, message_id: int) -> None:
        """Queue downloading the media of inbound message `message_id`; raises `Unavailable`."""
        await self._enqueue(MEDIA_JOB, hotel_id, message_id, f"media:{message_id}")

    async def _enqueue(self, job: str, hotel_id: int, message_id: int, job_id: str) -> None:
        # The trace context travels inside the job, so its spans join the webhook's trace.
        context = tracing.carrier() or None
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.enqueue_job(
                    job, hotel_id, message_id, trace=context, _job_id=job_id
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable("the job queue is unavailable") from exc


class InProgressLease:
    """Shortens and renews arq's in-progress key of one running job.

    arq marks a started job with a key that lives for the job timeout + 10 s, and no other
    worker starts the job while it exists: a worker killed with SIGKILL would hold its jobs that
    long (130 s by default). Renewed to `lease_seconds` while the job runs instead, the key of a
    dead worker's job expires within `lease_seconds` and another worker re-runs the job.
    https://arq-docs.helpmanual.io/#job-uniqueness ; arq's `Worker.start_jobs`."""

    def __init__(self, redis: ArqRedis, job_id: str, *, lease_seconds: float) -> None:
        self._redis = redis
        self._key = in_progress_key_prefix + job_id
        self._lease_ms = max(1, int(lease_seconds * 1000))

    async def renew(self) -> bool:
        """Set the key to expire `lease_seconds` from now; False once it is gone (the job
        finished). Raises `Unavailable` when Redis does not answer."""
        try:
            return bool(await self._redis.pexpire(self._key, self._lease_ms))
        except (RedisError, OSError) as exc:
            raise Unavailable("the job queue is unavailable") from exc
