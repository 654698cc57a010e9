"""The kopf handlers of `Hotel` resources: thin, like web handlers. Each reads the resource,
calls `reconcile` (the services the CLI calls), and writes the status and Events.

- create, update, resume: reconcile now; a part that is not ready is retried with backoff
  (`kopf.TemporaryError`), a spec the API server accepted but HotelChat cannot serve is not
  (`kopf.PermanentError`, until the spec changes).
- a timer, every OPERATOR_RESYNC_SECONDS: reconcile again, which corrects drift (a hotel changed
  behind the operator's back) and picks up rotated tokens and edited knowledge bases.
- delete: the finalizer `hotelchat.io/tenant` stops routing at once and applies the
  deletionPolicy.

Status conditions are merged into the freshest object with a JSON patch (`patch.fns`), so their
`lastTransitionTime` survives a reconcile that changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import kopf
import structlog

from hotelchat.bootstrap import OperatorContainer
from hotelchat.config import Settings
from hotelchat.domain.errors import InvalidInput, Unavailable
from hotelchat.entrypoints.operator.reconcile import reconcile, release
from hotelchat.entrypoints.operator.resource import (
    GROUP,
    PARTS,
    PLURAL,
    READY,
    VERSION,
    Condition,
    Outcome,
    merge_conditions,
    not_reconciled,
    now_rfc3339,
    read_hotel,
    transitions,
)
from hotelchat.observability import metrics

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300.0


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (0-based) of a handler: 5, 10, 20, … up to 5 min."""
    return float(min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** min(retry, 10)))


class Readiness:
    """Which Hotel resources are ready, for the `hotelchat_operator_hotels` gauge."""

    def __init__(self) -> None:
        self._ready: dict[str, bool] = {}

    def set(self, uid: str, ready: bool | None) -> None:
        if ready is None:
            self._ready.pop(uid, None)
        else:
            self._ready[uid] = ready
        ready_count = sum(self._ready.values())
        metrics.OPERATOR_HOTELS.labels("true").set(ready_count)
        metrics.OPERATOR_HOTELS.labels("false").set(len(self._ready) - ready_count)


def _write_status(
    patch: kopf.Patch,
    generation: int,
    conditions: list[Condition],
    fields: Mapping[str, Any],
) -> None:
    """Merge `conditions` (observed at `generation`) and `fields` into the status, on the
    freshest body (JSON patch)."""
    now = now_rfc3339()

    def apply(body: kopf.RawBody) -> None:
        current = body.setdefault("status", {})
        current.update(fields)
        current["conditions"] = merge_conditions(
            current.get("conditions"), conditions, generation=generation, now=now
        )

    patch.fns.append(apply)


def _events(body: kopf.Body, before: Any, outcome: Outcome) -> None:
    """An Event for what was done, and one per condition that turned bad."""
    if outcome.changes:
        kopf.event(
            body, type="Normal", reason="Reconciled", message="; ".join(outcome.changes)[:1000]
        )
    for condition in transitions(before, outcome.conditions):
        if condition.status == "False" and condition.type != READY:
            kopf.event(
                body, type="Warning", reason=condition.reason, message=condition.message[:1000]
            )
        elif condition.type == READY and condition.status == "True":
            kopf.event(body, type="Normal", reason="Ready", message=condition.message)


class HotelHandlers:
    """What the handlers share: the readiness gauge, and which resources a change handler is
    reconciling right now (the timer skips those rather than wait: no lock, no queue)."""

    def __init__(self, settings: Settings) -> None:
        self.readiness = Readiness()
        self.in_flight: set[str] = set()
        self.public_url = settings.public_url

    async def reconcile(
        self,
        trigger: str,
        body: kopf.Body,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        retry: int,
        *,
        quiet: bool,
    ) -> None:
        """Reconcile `body` and write its status. Unless `quiet` (the timer), a part that is not
        ready raises `kopf.TemporaryError` (retried with backoff), an unservable spec
        `kopf.PermanentError`."""
        platform: OperatorContainer = memo["platform"]
        started = time.monotonic()
        uid = str(body.metadata.uid)
        self.in_flight.add(uid)
        result = "error"
        try:
            result = await self._reconcile(platform, body, status, patch, retry, quiet=quiet)
        finally:
            self.in_flight.discard(uid)
            metrics.OPERATOR_RECONCILES.labels(trigger, result).inc()
            metrics.OPERATOR_RECONCILE_DURATION.labels(trigger).observe(time.monotonic() - started)

    async def _reconcile(
        self,
        platform: OperatorContainer,
        body: kopf.Body,
        status: kopf.Status,
        patch: kopf.Patch,
        retry: int,
        *,
        quiet: bool,
    ) -> str:
        uid = str(body.metadata.uid)
        try:
            resource = read_hotel(body)
        except InvalidInput as exc:
            waiting = not_reconciled(PARTS, "waiting for a valid spec")
            condition = Condition(READY, "False", "InvalidSpec", exc.message)
            generation = int(body.metadata.get("generation") or 0)
            _write_status(patch, generation, [*waiting, condition], {})
            self.readiness.set(uid, False)
            if quiet:
                return "not_ready"
            kopf.event(body, type="Warning", reason="InvalidSpec", message=exc.message)
            raise kopf.PermanentError(exc.message) from exc
        try:
            outcome = await reconcile(platform, resource)
        except Unavailable as exc:
            log.warning("operator.unavailable", hotel=resource.name, error=exc.message)
            condition = Condition(READY, "Unknown", "DependencyUnavailable", exc.message)
            _write_status(patch, resource.generation, [condition], {})
            if quiet:
                return "error"
            raise kopf.TemporaryError(exc.message, delay=backoff(retry)) from exc
        previous = dict(status)
        fields = outcome.status_fields(resource, self.public_url, previous)
        _write_status(patch, resource.generation, outcome.conditions, fields)
        _events(body, previous.get("conditions"), outcome)
        ready = outcome.ready.status == "True"
        self.readiness.set(uid, ready)
        if not ready and not quiet and outcome.ready.reason != "Suspended":
            raise kopf.TemporaryError(
                f"{outcome.ready.reason}: {outcome.ready.message}", delay=backoff(retry)
            )
        return "ready" if ready else "not_ready"

    async def release(self, body: kopf.Body, memo: kopf.Memo, retry: int) -> None:
        """The finalizer: apply the deletionPolicy; Unavailable is retried with backoff."""
        platform: OperatorContainer = memo["platform"]
        started = time.monotonic()
        result = "error"
        try:
            try:
                resource = read_hotel(body)
            except InvalidInput:
                result = "ready"
                return  # never provisioned: nothing to release
            try:
                done = await release(platform, resource)
            except Unavailable as exc:
                raise kopf.TemporaryError(exc.message, delay=backoff(retry)) from exc
            kopf.event(body, type="Normal", reason="Released", message=done[:1000])
            log.info("operator.released", hotel=resource.name, policy=resource.deletion_policy)
            result = "ready"
        finally:
            self.readiness.set(str(body.metadata.uid), None)
            metrics.OPERATOR_RECONCILES.labels("delete", result).inc()
            metrics.OPERATOR_RECONCILE_DURATION.labels("delete").observe(time.monotonic() - started)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Register the handlers of `Hotel` resources on `registry`."""
    handlers = HotelHandlers(settings)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    async def on_create(
        body: kopf.Body, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, retry: int,
        **_: Any,
    ) -> None:  # fmt: skip
        await handlers.reconcile("create", body, status, patch, memo, retry, quiet=False)

    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    async def on_update(
        body: kopf.Body, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, retry: int,
        **_: Any,
    ) -> None:  # fmt: skip
        await handlers.reconcile("update", body, status, patch, memo, retry, quiet=False)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    async def on_resume(
        body: kopf.Body, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, retry: int,
        **_: Any,
    ) -> None:  # fmt: skip
        await handlers.reconcile("resume", body, status, patch, memo, retry, quiet=False)

    interval = settings.operator_resync_seconds

    @kopf.timer(GROUP, VERSION, PLURAL, registry=registry, id="resync", interval=interval,
                initial_delay=interval)  # fmt: skip
    async def resync(
        body: kopf.Body, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, **_: Any
    ) -> None:
        if str(body.metadata.uid) in handlers.in_flight or body.metadata.get("deletionTimestamp"):
            return  # a change handler is at it right now
        await handlers.reconcile("timer", body, status, patch, memo, 0, quiet=True)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="release")
    async def on_delete(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
        await handlers.release(body, memo, retry)
