"""What the Socket.IO scenarios (S1, S2, S7) share: agents of the bench hotel with open sessions,
web-chat guest sessions, python-socketio clients on the websocket transport (one per simulated
browser tab) for the product's `/agent` and `/guest` namespaces and for the bare baseline
(`loadtest/bare_socketio.py`), and starting that baseline.

Agents' sessions are opened in the database as `services.auth.log_in` opens them (the SHA-256
of a random cookie token, with a CSRF token and an expiry): logging 1,000 agents in through the
login form would measure argon2 password hashing, not sockets.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import socketio

from hotelchat.adapters.embedded import free_port
from hotelchat.adapters.postgres.provisioning import hash_password
from hotelchat.entrypoints.web.security import SESSION_COOKIE
from hotelchat.services.auth import SESSION_SECONDS, token_hash
from loadtest import harness
from loadtest.bare_socketio import raise_open_files
from loadtest.harness import HOTEL, Proc, Stack

CONNECT_TIMEOUT = 20.0  # seconds a socket may take to connect before it counts as failed

__all__ = ["raise_open_files"]


@dataclass
class Agent:
    agent_id: int
    name: str
    token: str  # the session cookie's value


async def open_agents(stack: Stack, count: int, *, first: int = 0) -> list[Agent]:
    """`count` agents of the bench hotel (numbered from `first`), each with a live session."""
    conn = await asyncpg.connect(stack.postgres.admin_dsn)
    try:
        row = await conn.fetchrow("SELECT id, chain_id FROM hotels WHERE slug = $1", HOTEL)
        if row is None:
            raise RuntimeError(f"no hotel {HOTEL}")
        hotel_id, chain_id = row["id"], row["chain_id"]
        password = hash_password("bench-password-" + secrets.token_hex(4))  # one hash for all
        agents: list[Agent] = []
        async with conn.transaction():
            for i in range(first, first + count):
                name = f"Agent {i}"
                agent_id = await conn.fetchval(
                    """INSERT INTO agents (chain_id, email, display_name, password_hash)
                       VALUES ($1, $2, $3, $4) RETURNING id""",
                    chain_id, f"agent{i}.{secrets.token_hex(3)}@bench.example", name, password,
                )  # fmt: skip
                agents.append(Agent(agent_id, name, secrets.token_urlsafe(32)))
            await conn.executemany(
                "INSERT INTO agent_hotels (agent_id, hotel_id, role) VALUES ($1, $2, 'agent')",
                [(a.agent_id, hotel_id) for a in agents],
            )
            await conn.executemany(
                """INSERT INTO agent_sessions (token_hash, agent_id, hotel_id, csrf_token,
                                              expires_at)
                   VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
                [(token_hash(a.token), a.agent_id, hotel_id, secrets.token_urlsafe(32),
                  float(SESSION_SECONDS)) for a in agents],
            )  # fmt: skip
        return agents
    finally:
        await conn.close()


async def hotel_id(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.postgres.admin_dsn)
    try:
        return int(await conn.fetchval("SELECT id FROM hotels WHERE slug = $1", HOTEL))
    finally:
        await conn.close()


@dataclass
class GuestSession:
    token: str
    conversation_id: int
    address: str


async def guest_sessions(base: str, count: int, *, concurrency: int = 20) -> list[GuestSession]:
    """`count` new web-chat guests (`POST /chat/<hotel>/session`), each from an address of its
    own (the server must trust one proxy hop). Raises RuntimeError on a refused session."""
    made: list[GuestSession] = []
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def one(i: int) -> None:
            address = f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}"
            async with gate, http.post(
                f"{base}/chat/{HOTEL}/session", json={"name": f"Guest {i}"},
                headers={"X-Forwarded-For": address},
            ) as response:  # fmt: skip
                if response.status != 200:
                    raise RuntimeError(f"guest session: HTTP {response.status}")
                answer = await response.json()
            made.append(GuestSession(answer["token"], int(answer["conversation_id"]), address))

        offset = secrets.randbelow(10**6) * 10
        await asyncio.gather(*(one(offset + i) for i in range(count)))
    return made


@dataclass
class Tab:
    """One socket: a browser tab of an agent or a guest, or a client of the bare server.
    `received` counts the server's events by name; `arrivals` keeps the arrival time
    (monotonic seconds) of each `bench` / `probe` event by its `seq`."""

    client: socketio.AsyncClient
    namespace: str
    received: Counter[str] = field(default_factory=Counter)
    arrivals: dict[int, float] = field(default_factory=dict)
    presence_agents: int = 0  # agents listed in the `presence` events received
    notify: Callable[[int], None] | None = None  # called with each new `seq` as it arrives

    async def call(self, event: str, data: Any, timeout: float) -> str:
        """Send `event` and wait for its ack: "ok", or the ack's error code."""
        answer = await self.client.call(event, data, namespace=self.namespace, timeout=timeout)
        if isinstance(answer, dict) and answer.get("ok"):
            return "ok"
        return f"ack {answer!r}"[:60]

    async def close(self) -> None:
        await self.client.disconnect()


def _tab(namespace: str) -> Tab:
    client = socketio.AsyncClient(reconnection=False, request_timeout=CONNECT_TIMEOUT)
    tab = Tab(client, namespace)

    async def anything(event: str, data: Any = None) -> None:
        tab.received[event] += 1
        if event in ("bench", "probe") and isinstance(data, dict) and "seq" in data:
            seq = int(data["seq"])
            if seq not in tab.arrivals:
                tab.arrivals[seq] = time.monotonic()
                if tab.notify is not None:
                    tab.notify(seq)
        elif event == "presence" and isinstance(data, dict):
            tab.presence_agents += len(data.get("agents") or ())

    client.on("*", anything, namespace=namespace)
    return tab


async def connect_tab(base: str, namespace: str, *, cookie: str | None = None,
                      token: str | None = None, address: str | None = None) -> Tab:  # fmt: skip
    """Open one websocket to `base`'s `namespace`, as an agent (`cookie`: their session
    token), a guest (`token`) or a bare client (neither). Raises on failure or after
    `CONNECT_TIMEOUT` seconds."""
    tab = _tab(namespace)
    headers = {}
    if cookie is not None:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    if address is not None:
        headers["X-Forwarded-For"] = address
    await tab.client.connect(
        base,
        headers=headers,
        auth={"token": token} if token else None,
        namespaces=[namespace],
        transports=["websocket"],
        wait_timeout=CONNECT_TIMEOUT,
    )
    return tab


async def connect_all(
    opens: Sequence[Callable[[], Awaitable[Tab]]], *, concurrency: int = 50, label: str = ""
) -> tuple[list[Tab], Counter[str], float]:
    """Run the `opens` with at most `concurrency` at once. Returns the open tabs (in the order
    of `opens`, failed ones left out), the failures by error class, and the seconds it took."""
    gate = asyncio.Semaphore(concurrency)
    tabs: dict[int, Tab] = {}
    failures: Counter[str] = Counter()
    started = time.monotonic()
    done = [0]

    async def one(i: int, open_: Callable[[], Awaitable[Tab]]) -> None:
        async with gate:
            try:
                tabs[i] = await asyncio.wait_for(open_(), CONNECT_TIMEOUT + 5)
            except Exception as exc:  # a failed connect is a result: count it
                failures[type(exc).__name__] += 1
            done[0] += 1
            if done[0] % 500 == 0:
                harness.log(f"  {label} {done[0]}/{len(opens)} connects done")

    await asyncio.gather(*(one(i, o) for i, o in enumerate(opens)))
    return [tabs[i] for i in sorted(tabs)], failures, time.monotonic() - started


async def close_all(tabs: list[Tab]) -> None:
    for i in range(0, len(tabs), 200):
        await asyncio.gather(*(t.close() for t in tabs[i : i + 200]), return_exceptions=True)


def start_bare(
    stack: Stack, *, redis: bool = False, name: str = "bare-socketio"
) -> tuple[Proc, str]:
    """Start the bare python-socketio server (Redis client manager with `redis`) and wait until
    it answers; returns it and its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "loadtest.bare_socketio", "--port", str(port)]
    if redis:
        argv += ["--redis", stack.redis.url]
    import os

    proc = stack.spawn(name, argv, dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    harness.wait_http(base + "/socket.io/?EIO=4&transport=polling", proc=proc)
    return proc, base


def serve_on(stack: Stack, port: int, name: str = "web", **env: str) -> Proc:
    """Start one more `hotelchat serve` of the stack's deployment on `port`."""
    web = stack.hotelchat(name, ["serve"], PORT=str(port), **env)
    harness.wait_http(f"http://127.0.0.1:{port}/readyz", proc=web)
    return web
