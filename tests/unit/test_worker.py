"""The worker's one error mapping: what a service raises decides whether arq retries."""

from __future__ import annotations

import pytest
from arq import Retry

from hotelchat.domain.errors import ModelError, TemporaryFailure, Unavailable
from hotelchat.entrypoints.worker import UNAVAILABLE_RETRY_SECONDS, _retrying


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
