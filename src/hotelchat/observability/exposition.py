"""Serving the metrics: one registry per process, or the aggregate of every process when
PROMETHEUS_MULTIPROC_DIR is set (several Hypercorn workers, several arq workers in a pod).
https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

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
