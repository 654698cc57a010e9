"""Run an aiohttp application on a loopback port in a background thread, with its own event loop:
how tests and `hotelchat dev` host the emulators."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web

START_TIMEOUT = 10.0


class ServerThread:
    """`app_factory()` served at http://`host`:`port` (port 0 picks a free one) until `stop()`."""

    def __init__(
        self, app_factory: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._factory = app_factory
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="emulator", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> ServerThread:
        """Start serving; returns once the port accepts connections (or raises)."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("emulator did not start")
        if self._error is not None:
            raise RuntimeError("emulator failed to start") from self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (at most 10 seconds)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self._factory(), access_log=None, handle_signals=False)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else self._port
        except OSError as exc:  # the port is taken, or the host is not ours
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
