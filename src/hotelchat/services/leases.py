"""Short leases kept alive by a heartbeat while the work they guard runs.

A job that answers or sends a message holds a lease (a timestamp in PostgreSQL, arq's
in-progress key in Redis) that expires by itself if the job's process dies. A long lease makes
a dead worker's message wait that long; a short one could run out under a live job that is only
slow (a model taking 20 s). So the lease is short and renewed: `kept_alive` renews it every
`every` seconds while the block runs, so a dead worker's lease is gone within one lease length,
and a live job's never is, up to a bound (`for_at_most` seconds) after which a stuck job stops
renewing and loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from hotelchat.domain.errors import Unavailable

log = structlog.get_logger(__name__)

# A lease is renewed this many times per its length: two renewals may fail (a slow database)
# before it runs out under a live job.
RENEWALS_PER_LEASE = 3


def renew_every(lease_seconds: float) -> float:
    """Seconds between renewals of a lease of `lease_seconds`."""
    return lease_seconds / RENEWALS_PER_LEASE


@contextlib.asynccontextmanager
async def kept_alive(
    renew: Callable[[], Awaitable[bool]], *, every: float, for_at_most: float, what: str
) -> AsyncIterator[None]:
    """Call `renew` every `every` seconds while the block runs, for at most `for_at_most`
    seconds. `renew` returns False when the lease is no longer there to renew (the work was
    finished or released elsewhere): renewing stops. A renewal that fails (`Unavailable`, a
    timeout) is logged and the next one tries again; the lease simply expires if none succeeds.
    The block itself is never interrupted."""
    task = asyncio.get_running_loop().create_task(_beat(renew, every, for_at_most, what))
    try:
        yield
    finally:
        task.cancel()
        # Bounded: a renewal in flight is cancelled too. Its SQL only extends a lease still
        # held, so one that lands after the block finished the work changes nothing.
        await asyncio.wait([task], timeout=every)


async def _beat(
    renew: Callable[[], Awaitable[bool]], every: float, for_at_most: float, what: str
) -> None:
    deadline = asyncio.get_running_loop().time() + for_at_most
    while True:
        await asyncio.sleep(every)
        if asyncio.get_running_loop().time() + every > deadline:
            log.warning("lease.renewal_bound_reached", lease=what, seconds=for_at_most)
            return
        try:
            async with asyncio.timeout(every):
                if not await renew():
                    return
        except (Unavailable, TimeoutError, OSError) as exc:
            log.warning("lease.renewal_failed", lease=what, error_class=type(exc).__name__)
