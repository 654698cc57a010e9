"""What Kubernetes and Prometheus ask of a process that has no web app of its own (the worker,
the operator): GET /metrics and GET /healthz, on one port.

The server runs on the process's own event loop, not in a thread, so a liveness probe stops being
answered when the loop is stuck, which is what a liveness probe is for
(https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import structlog
from aiohttp import web

from hotelchat.observability import exposition

log = structlog.get_logger(__name__)

# A check returns None while the process is healthy, else why it is not (for the probe's body).
HealthCheck = Callable[[], str | None]


class ProbeServer:
    """/metrics (this process's registry, or every process's under PROMETHEUS_MULTIPROC_DIR)
    and /healthz (200 `ok`, or 503 with the reason `healthy()` gives) on `host`:`port`."""

    def __init__(self, host: str, port: int, healthy: HealthCheck) -> None:
        self.host, self.port, self.healthy = host, port, healthy
        self._runner: web.AppRunner | None = None

    async def start(self) -> bool:
        """Start serving; False (logged) when the port is taken, e.g. by another worker process
        of the same pod, which serves the same aggregate."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            log.info("probes.port_taken", port=self.port, error_class=type(exc).__name__)
            await runner.cleanup()
            return False
        self._runner = runner
        return True

    async def stop(self) -> None:
        """Stop serving (bounded by aiohttp's shutdown timeout)."""
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        body, content_type = exposition.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _health(self, _request: web.Request) -> web.Response:
        problem = self.healthy()
        if problem is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=problem + "\n")
