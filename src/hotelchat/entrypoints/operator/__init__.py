"""`hotelchat operator`: the kopf operator that turns each `Hotel` resource (hotelchat.io/v1alpha1,
one per tenant, in the namespace of its chain) into a working hotel.

It runs cluster-wide, connecting in-cluster (its ServiceAccount) or through KUBECONFIG like any
client, as one replica (the Helm chart's Deployment uses the Recreate strategy; kopf's peering is
not used, so two operators started by mistake would both reconcile, which is safe because every
step is idempotent, only wasteful). Its liveness probe is kopf's (GET /healthz on
OPERATOR_HEALTH_PORT), its metrics are on OPERATOR_METRICS_PORT.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import structlog

from hotelchat import bootstrap
from hotelchat.config import Settings
from hotelchat.entrypoints.operator.handlers import register
from hotelchat.entrypoints.operator.resource import FINALIZER
from hotelchat.entrypoints.probes import ProbeServer

log = structlog.get_logger(__name__)

# Every call the operator makes to the Kubernetes API is bounded (seconds).
API_REQUEST_TIMEOUT = 30.0
API_CONNECT_TIMEOUT = 10.0
WATCH_SERVER_TIMEOUT = 300  # the API server ends a watch after this; kopf starts another


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's settings: our finalizer and annotation prefix, bounded API calls, Events from
    warnings only (the handlers post their own)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="hotelchat.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="hotelchat.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "hotelchat-operator"
    settings.networking.request_timeout = API_REQUEST_TIMEOUT
    settings.networking.connect_timeout = API_CONNECT_TIMEOUT
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT + 30
    settings.watching.connect_timeout = API_CONNECT_TIMEOUT


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    """The operator's handlers, on a registry of their own (not kopf's global one)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        log.info("operator.started")

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod its ServiceAccount; elsewhere KUBECONFIG (or ~/.kube/config)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    register(registry, settings)
    return registry


async def run_operator(settings: Settings) -> None:
    """Run the operator until SIGINT or SIGTERM. Raises `ConfigError`, `Unavailable` or
    `SchemaError` from start-up (see `bootstrap.build_operator`), before kopf starts: a
    misconfigured operator exits instead of retrying forever."""
    platform = await bootstrap.build_operator(settings)
    probes = None
    try:
        if settings.operator_metrics_port:
            probes = ProbeServer(
                settings.operator_host, settings.operator_metrics_port, lambda: None
            )
            await probes.start()
        await kopf.operator(
            registry=build_registry(settings),
            clusterwide=True,
            standalone=True,
            liveness_endpoint=(
                f"http://{settings.operator_host}:{settings.operator_health_port}/healthz"
            ),
            memo=kopf.Memo(platform=platform),
        )
    finally:
        if probes is not None:
            await probes.stop()
        await platform.close()
        log.info("operator.stopped")
