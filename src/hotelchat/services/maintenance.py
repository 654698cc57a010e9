"""Periodic upkeep: queue again the work a crash or a queue outage left behind.

The webhook commits a message before it queues its reply, so a process that dies between the two,
or a Redis that is down at that moment, leaves a stored message with no job. Every 15 seconds the
worker asks PostgreSQL for such messages (no live lease, older than `min_age_seconds`) and queues
them again; job ids make a duplicate enqueue a no-op.
"""

from __future__ import annotations

import structlog

from hotelchat.domain.errors import Unavailable
from hotelchat.services.ports import Deps

log = structlog.get_logger(__name__)


async def requeue_stalled(deps: Deps, *, min_age_seconds: int = 30, limit: int = 200) -> int:
    """Queue replies and sends that have no job; returns how many were queued.

    Raises `Unavailable` when PostgreSQL cannot be asked; stops early (and logs) when the queue
    is down, leaving the rest for the next run.
    """
    stalled = await deps.store.stalled_work(min_age_seconds=min_age_seconds, limit=limit)
    queued = 0
    for item in stalled:
        try:
            if item.kind == "reply":
                await deps.jobs.enqueue_reply(item.hotel_id, item.message_id)
            else:
                await deps.jobs.enqueue_send(item.hotel_id, item.message_id)
        except Unavailable:
            log.warning("sweeper.queue_unavailable", remaining=len(stalled) - queued)
            break
        queued += 1
    if queued:
        log.info("sweeper.requeued", count=queued)
    return queued
