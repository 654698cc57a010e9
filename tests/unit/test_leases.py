"""The lease heartbeat: renews while the block runs, stops when the lease is gone, when the
block ends, and at its bound; a failed renewal is retried at the next beat."""

from __future__ import annotations

import asyncio

from hotelchat.domain.errors import Unavailable
from hotelchat.services.leases import kept_alive, renew_every


class Renewals:
    def __init__(self, answers: list[bool | Exception] | None = None) -> None:
        self.calls = 0
        self._answers = answers or []
        self.third = asyncio.Event()

    async def __call__(self) -> bool:
        self.calls += 1
        if self.calls >= 3:
            self.third.set()
        if self._answers:
            answer = self._answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return True


def test_a_lease_is_renewed_three_times_per_length() -> None:
    assert renew_every(15.0) == 5.0


async def test_renewals_go_on_while_the_block_runs_and_stop_after_it() -> None:
    renew = Renewals()
    async with kept_alive(renew, every=0.01, for_at_most=60, what="test"):
        await asyncio.wait_for(renew.third.wait(), 5)
    done = renew.calls
    await asyncio.sleep(0.05)
    assert renew.calls == done


async def test_a_failed_renewal_is_tried_again_and_a_gone_lease_stops_them() -> None:
    renew = Renewals([Unavailable("PostgreSQL is down"), True, False])
    async with kept_alive(renew, every=0.01, for_at_most=60, what="test"):
        await asyncio.sleep(0.3)
    assert renew.calls == 3


async def test_renewals_stop_at_their_bound_while_the_block_still_runs() -> None:
    renew = Renewals()
    async with kept_alive(renew, every=0.02, for_at_most=0.1, what="test"):
        await asyncio.sleep(0.4)
    assert 1 <= renew.calls <= 5
