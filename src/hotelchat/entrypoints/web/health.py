"""Liveness and readiness for Kubernetes probes and load balancers."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from hotelchat.entrypoints.web.context import container

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz() -> Response:
    """200 while the process serves requests; checks nothing else."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
async def readyz() -> tuple[Response, int]:
    """200 when PostgreSQL and Redis both answer within 2 seconds, else 503 naming which not."""
    checks = await container().ready(timeout=2.0)
    ok = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503
