"""Socket.IO through python-socketio, fanned out across processes by Redis.

Every web process runs an `AsyncServer` whose `AsyncRedisManager` relays emits to the other web
processes; workers emit through a write-only manager on the same Redis channel.
https://python-socketio.readthedocs.io/en/stable/server.html#emitting-from-external-processes

Emits are best effort by design: the Redis manager gives up after two failed publishes, so events
carry ids and small payloads, and every client catches up by its last-seen message id when it
(re)connects. An emit never waits more than `EMIT_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import socketio
import structlog
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotelchat.observability import metrics, tracing

log = structlog.get_logger(__name__)

CHANNEL = "hotelchat-socketio"
EMIT_TIMEOUT = 2.0
# Largest message a client may send us (engine.io's default is 1 MB).
MAX_CLIENT_MESSAGE_BYTES = 16 * 1024


def create_server(*, redis_url: str, allowed_origins: list[str]) -> socketio.AsyncServer:
    """The Socket.IO server a web process mounts. Only `allowed_origins` may connect from a
    browser (a cross-site page cannot open a socket with an agent's cookie)."""
    manager = socketio.AsyncRedisManager(
        redis_url,
        channel=CHANNEL,
        redis_options={"health_check_interval": 30, "socket_connect_timeout": 3},
    )
    return socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=allowed_origins,
        ping_interval=20,
        ping_timeout=20,
        max_http_buffer_size=MAX_CLIENT_MESSAGE_BYTES,
        # Our own loggers: given `False`, the libraries attach a plain stderr handler of their
        # own next to our JSON one.
        logger=_library_logger("socketio.server"),
        engineio_logger=_library_logger("engineio.server"),
    )


def _library_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


async def start_server(server: socketio.AsyncServer, timeout: float = 3.0) -> None:
    """Start the server's Redis listener now rather than at the first client connection, and
    wait (at most `timeout` seconds) until it has connected, so that emits made before any
    client connects share its connection instead of opening one the listener then drops."""
    if server.manager_initialized:
        return
    server.manager_initialized = True
    server.manager.initialize()
    deadline = asyncio.get_running_loop().time() + timeout
    while not getattr(server.manager, "connected", True):
        if asyncio.get_running_loop().time() > deadline:
            log.warning("realtime.listener_slow")
            return
        await asyncio.sleep(0.01)


async def close_server(server: socketio.AsyncServer) -> None:
    """Stop the server's Redis listener and close its connections (process shutdown)."""
    manager = server.manager
    listener = getattr(manager, "thread", None)
    if isinstance(listener, asyncio.Task) and not listener.done():
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
    for attribute in ("pubsub", "redis"):
        connection = getattr(manager, attribute, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(EMIT_TIMEOUT):
                    await connection.aclose()


def create_emitter(redis_url: str) -> socketio.AsyncRedisManager:
    """A write-only manager for processes that emit but serve no sockets (workers)."""
    return socketio.AsyncRedisManager(
        redis_url,
        channel=CHANNEL,
        write_only=True,
        redis_options={"socket_timeout": EMIT_TIMEOUT, "socket_connect_timeout": EMIT_TIMEOUT},
    )


class SocketIOEvents:
    """`services.ports.Events` over a Socket.IO server or a write-only manager."""

    def __init__(self, emitter: Any) -> None:
        self._emitter = emitter

    async def emit(
        self, event: str, payload: Mapping[str, object], *, room: str, namespace: str
    ) -> None:
        """Emit `event` to `room`; failures are logged, never raised."""
        try:
            with tracing.span(f"socketio emit {event}", kind=SpanKind.PRODUCER,
                              attributes={"socketio.namespace": namespace}):  # fmt: skip
                async with asyncio.timeout(EMIT_TIMEOUT):
                    await self._emitter.emit(event, dict(payload), room=room, namespace=namespace)
        except Exception as exc:  # noqa: BLE001 - best effort by contract; clients resync
            log.warning("realtime.emit_failed", socket_event=event, error_class=type(exc).__name__)
            return
        metrics.SOCKET_EMITTED.labels(namespace, event).inc()

    async def close(self) -> None:
        """Close a write-only manager's Redis connection (a server closes its own)."""
        if isinstance(self._emitter, socketio.AsyncRedisManager):
            redis = getattr(self._emitter, "redis", None)
            if redis is not None:
                async with asyncio.timeout(EMIT_TIMEOUT):
                    await redis.aclose()


class RedisPresence:
    """Which agent sockets are connected to a hotel's dashboard, and whether their tab is in
    view. One Redis hash per hotel (`sid` -> agent, name, status, time); an entry not refreshed
    within `TTL_SECONDS` (its process died) is dropped when the hotel is next read, so the hash
    stays as small as the number of connected agents."""

    TTL_SECONDS = 90.0

    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self._redis = redis
        self._timeout = timeout

    @staticmethod
    def _key(hotel_id: int) -> str:
        return f"hotelchat:presence:{hotel_id}"

    async def set(self, hotel_id: int, sid: str, agent_id: int, name: str, status: str) -> None:
        entry = json.dumps({"agent_id": agent_id, "name": name, "status": status,
                            "at": time.time()})  # fmt: skip
        await self._run(self._set(hotel_id, sid, entry))

    async def _set(self, hotel_id: int, sid: str, entry: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(hotel_id), sid, entry)
            pipe.expire(self._key(hotel_id), 86400)
            await pipe.execute()

    async def remove(self, hotel_id: int, sid: str) -> None:
        await self._run(self._redis.hdel(self._key(hotel_id), sid))

    async def agents(self, hotel_id: int) -> list[dict[str, object]]:
        """One entry per agent: online if any of their tabs is, else away."""
        raw = await self._run(self._redis.hgetall(self._key(hotel_id))) or {}
        fresh: dict[int, dict[str, object]] = {}
        stale = []
        for sid, value in raw.items():
            entry = json.loads(value)
            if time.time() - entry["at"] > self.TTL_SECONDS:
                stale.append(sid)
                continue
            known = fresh.get(entry["agent_id"])
            if known is None or entry["status"] == "online":
                fresh[entry["agent_id"]] = {k: entry[k] for k in ("agent_id", "name", "status")}
        if stale:
            await self._run(self._redis.hdel(self._key(hotel_id), *stale))
        return list(fresh.values())

    async def _run(self, command: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await command
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("presence.unavailable", error_class=type(exc).__name__)
            return None
