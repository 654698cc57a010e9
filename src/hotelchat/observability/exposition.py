"""Serving the metrics: one registry per process, or the aggregate of every process when
PROMETHEUS_MULTIPROC_DIR is set (several Hypercorn workers, several arq workers in a pod).
https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import os

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

log = structlog.get_logger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def registry() -> CollectorRegistry:
    """The registry to expose: this process's, or all processes' under PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get(MULTIPROCESS_ENV):
        aggregate = CollectorRegistry()
        MultiProcessCollector(aggregate)  # type: ignore[no-untyped-call]
        return aggregate
    return REGISTRY


def render() -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def serve(port: int, host: str = "0.0.0.0") -> bool:  # noqa: S104 - scraped from the pod network
    """Serve /metrics on `port` in a background thread (workers, which have no web server).
    False when the port is taken: another process of the pod serves the same aggregate."""
    try:
        start_http_server(port, addr=host, registry=registry())
    except OSError as exc:
        log.info("metrics.port_taken", port=port, error_class=type(exc).__name__)
        return False
    return True
