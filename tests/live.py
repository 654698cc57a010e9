"""A live HotelChat web process inside the test's event loop (Hypercorn on a loopback port, Quart
and Socket.IO as in production), with helpers to log in and to connect Socket.IO clients."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config
from pydantic import AnyHttpUrl
from quart import Quart

from hotelchat.adapters.embedded import free_port
from hotelchat.bootstrap import Container
from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app, create_asgi
from hotelchat.entrypoints.web.context import EXTENSION
from tests.conftest import AGENT_PASSWORD

TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class Live:
    url: str
    app: Quart
    settings: Settings

    @property
    def container(self) -> Container:
        container: Container = self.app.extensions[EXTENSION]
        return container


@asynccontextmanager
async def live_server(settings: Settings, *, own_url: bool = False) -> AsyncIterator[Live]:
    """Serve `create_asgi(create_app(settings))` on 127.0.0.1 until the block ends. With
    `own_url`, the server's public URL is its loopback address (as a browser sees it)."""
    port = free_port()
    if own_url:
        settings = settings.model_copy(
            update={"public_base_url": AnyHttpUrl(f"http://127.0.0.1:{port}")}
        )
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1
    stop = asyncio.Event()
    app = create_app(settings)
    asgi = create_asgi(app, trusted_proxy_hops=settings.trusted_proxy_hops)
    task = asyncio.create_task(serve(asgi, config, shutdown_trigger=stop.wait))
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for _ in range(100):
            try:
                async with http.get(url + "/healthz") as response:
                    if response.status == 200 and EXTENSION in app.extensions:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    try:
        yield Live(url, app, settings)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def login_cookie(url: str, email: str, password: str = AGENT_PASSWORD) -> str:
    """Log in through the form; returns the session cookie's value."""
    # The cookies are Secure (the public URL is https) and this client talks plain http to
    # loopback, so it hands the login form's cookie back explicitly.
    async with aiohttp.ClientSession(timeout=TIMEOUT, cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(url + "/login") as page:
            found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
            assert found is not None
            login_csrf = page.cookies["hc_login"].value
        form = {"email": email, "password": password, "csrf_token": found.group(1)}
        headers = {"Cookie": f"hc_login={login_csrf}"}
        async with http.post(
            url + "/login", data=form, headers=headers, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
            return response.cookies["hc_session"].value


@dataclass
class Recorder:
    """Collects every event a Socket.IO client receives, by name."""

    events: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def handler(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            self.events[name].append(data)
            self.arrived.set()

        return record

    async def wait_for(self, name: str, predicate: Any = None, timeout: float = 10.0) -> Any:
        """The first `name` event matching `predicate`, waiting at most `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                for data in self.events[name]:
                    if predicate is None or predicate(data):
                        return data
                self.arrived.clear()
                await self.arrived.wait()


EVENTS = ("conversation", "message", "status", "ai_delta", "ai_done", "ai_aborted", "typing",
          "presence", "presence_list")  # fmt: skip


@asynccontextmanager
async def socket(
    url: str, namespace: str, *, cookie: str | None = None, token: str | None = None
) -> AsyncIterator[tuple[socketio.AsyncClient, Recorder]]:
    """A connected Socket.IO client (websocket transport) recording every event."""
    client = socketio.AsyncClient(reconnection=False)
    recorder = Recorder()
    for name in EVENTS:
        client.on(name, recorder.handler(name), namespace=namespace)
    headers = {"Cookie": f"hc_session={cookie}"} if cookie else {}
    await client.connect(
        url,
        headers=headers,
        auth={"token": token} if token else None,
        namespaces=[namespace],
        transports=["websocket"],
        wait_timeout=10,
    )
    try:
        yield client, recorder
    finally:
        await client.disconnect()
