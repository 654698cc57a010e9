"""A tiny kopf operator for proving the Kubernetes emulation (test_kube_emulation.py): the shapes
the real operator uses, and none of HotelChat. On create it fails once on purpose (so kopf must
store its progress and read it back), then writes status (a Ready condition merged by JSON Patch,
observedGeneration, senders) and posts an event; a spec update does the same with another
reason; delete posts an event and lets kopf remove its finalizer; a timer counts in an annotation.

In process: `register(registry)`. As its own process, with kopf's built-in kubeconfig login:
`python -m kopf run --all-namespaces --standalone tests/operator/tiny_operator.py`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, cast

import kopf

GROUP, VERSION, PLURAL = "hotelchat.io", "v1alpha1", "hotels"
FINALIZER = "tiny.test.hotelchat.io/cleanup"
TICKS = "tiny.test.hotelchat.io/ticks"


def ready_condition(
    status: str, reason: str, message: str, generation: int
) -> Callable[[kopf.RawBody], None]:
    """A patch function that sets the Ready condition, keeping lastTransitionTime unless the
    status changes (kopf turns it into a JSON Patch against the freshest body)."""

    def apply(body: kopf.RawBody) -> None:
        raw = cast(dict[str, Any], body)
        conditions: list[dict[str, Any]] = raw.setdefault("status", {}).setdefault("conditions", [])
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = {"status": status, "reason": reason, "message": message}
        for condition in conditions:
            if condition.get("type") == "Ready":
                if condition.get("status") != status:
                    condition["lastTransitionTime"] = now
                condition.update(fields, observedGeneration=generation)
                return
        conditions.append(
            {"type": "Ready", **fields, "lastTransitionTime": now, "observedGeneration": generation}
        )

    return apply


def _senders(spec: kopf.Spec) -> int:
    return len(spec.get("whatsapp", {}).get("senders", []))


def register(registry: kopf.OperatorRegistry) -> kopf.OperatorRegistry:
    """Add the tiny operator's handlers to `registry` (and return it)."""

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.networking.request_timeout = 10
        settings.watching.connect_timeout = 2

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, backoff=0.2)
    def provision(
        spec: kopf.Spec, meta: kopf.Meta, body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any
    ) -> None:
        if retry == 0:
            raise kopf.TemporaryError("the first attempt fails on purpose", delay=0.2)
        generation = int(meta["generation"])
        message = f"{spec['displayName']} is provisioned (attempt {retry + 1})"
        patch.fns.append(ready_condition("True", "Provisioned", message, generation))
        patch.status["observedGeneration"] = generation
        patch.status["senders"] = _senders(spec)
        kopf.info(body, reason="Provisioned", message=message)

    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    def reconfigure(
        spec: kopf.Spec, meta: kopf.Meta, body: kopf.Body, patch: kopf.Patch, **_: Any
    ) -> None:
        generation = int(meta["generation"])
        message = f"{spec['displayName']} is reconfigured"
        patch.fns.append(ready_condition("True", "Reconfigured", message, generation))
        patch.status["observedGeneration"] = generation
        patch.status["senders"] = _senders(spec)
        kopf.info(body, reason="Reconfigured", message=message)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def retire(body: kopf.Body, **_: Any) -> None:
        kopf.info(body, reason="Retired", message="the hotel is retired")

    @kopf.timer(GROUP, VERSION, PLURAL, interval=0.3, registry=registry)
    def tick(meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
        patch.meta.annotations[TICKS] = str(int(meta.annotations.get(TICKS, "0")) + 1)

    return registry


# `kopf run <this file>` executes it as a module named "__kopf_script_<n>__<path>".
if __name__.startswith("__kopf_script_"):
    register(kopf.get_default_registry())
