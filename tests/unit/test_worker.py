"""The worker's one error mapping: what a service raises decides whether arq retries."""

from __future__ import annotations

import pytest
from arq import Retry

from hotelchat.domain.errors import ModelError, TemporaryFailure, Unavailable
from hotelchat.entrypoints.worker import (
    STALE_LOOP_SECONDS,
    UNAVAILABLE_RETRY_SECONDS,
    Liveness,
    _retrying,
)


async def _raise(exc: Exception) -> str:
    raise exc


async def test_temporary_failures_and_outages_are_retried_later() -> None:
    with pytest.raises(Retry) as caught:
        await _retrying(_raise(TemporaryFailure("busy", defer_seconds=7)))
    assert caught.value.defer_score == 7000
    with pytest.raises(Retry) as caught:
        await _retrying(_raise(Unavailable("PostgreSQL is down")))
    assert caught.value.defer_score == UNAVAILABLE_RETRY_SECONDS * 1000


async def test_other_errors_are_not_retried() -> None:
    with pytest.raises(ModelError):
        await _retrying(_raise(ModelError("bad", kind="bad_response")))


def test_liveness_fails_when_the_job_loop_stops_going_round() -> None:
    liveness = Liveness()
    assert liveness.problem() is None
    liveness.last_beat -= STALE_LOOP_SECONDS + 1
    problem = liveness.problem()
    assert problem is not None
    assert "has not run for" in problem
    liveness.waiting_for_redis = True  # an outage: restarting the pod would not help
    assert liveness.problem() is None
    liveness.beat()
    assert not liveness.waiting_for_redis
    assert liveness.problem() is None
