"""Liveness and readiness for Kubernetes probes and load balancers, and the Prometheus metrics."""

from __future__ import annotations

import hmac

from quart import Blueprint, Response, jsonify, request

from hotelchat.domain.errors import Unauthenticated
from hotelchat.entrypoints.web.context import container
from hotelchat.observability import exposition

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


@blueprint.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <it>`."""
    token = container().settings.metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given, token.get_secret_value()):
            raise Unauthenticated("metrics need the bearer token")
    body, content_type = exposition.render()
    return Response(body, content_type=content_type)
