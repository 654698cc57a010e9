"""The Socket.IO baseline of S1, S2 and S7: a bare python-socketio `AsyncServer` on the same stack
as the product (ASGI under Hypercorn, one process, websocket transport), with no authentication,
no session state and no product code. Every socket joins the room `hotel` when it connects.

Events (the same names the product's clients send, so one client drives either server):
`typing` and `echo` answer `{"ok": true}` through the ack; `fanout` emits its data as `bench` to
the room `hotel` (through the client manager: in memory, or Redis with `--redis`) and then acks.

Run: python -m loadtest.bare_socketio --port P [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

CHANNEL = "bench-bare-socketio"  # not the product's channel: the two never mix
ROOM = "hotel"


def raise_open_files() -> int:
    """Raise this process's soft limit of open files to its hard limit; returns the new soft
    limit (file descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def create(redis_url: str | None) -> socketio.AsyncServer:
    """The bare server: in-memory client manager, or Redis pub/sub on `CHANNEL`."""
    manager = (
        socketio.AsyncRedisManager(redis_url, channel=CHANNEL) if redis_url else None
    )  # fmt: skip
    sio = socketio.AsyncServer(
        async_mode="asgi", client_manager=manager, ping_interval=20, ping_timeout=20
    )

    for namespace in ("/", "/agent", "/guest"):

        async def connect(sid: str, environ: dict[str, Any], auth: Any = None,
                          namespace: str = namespace) -> None:  # fmt: skip
            await sio.enter_room(sid, ROOM, namespace=namespace)

        async def ack(sid: str, data: Any = None) -> dict[str, Any]:
            return {"ok": True}

        async def fanout(sid: str, data: Any = None, namespace: str = namespace) -> dict[str, Any]:
            await sio.emit("bench", data, room=ROOM, namespace=namespace)
            return {"ok": True}

        sio.on("connect", connect, namespace=namespace)
        sio.on("typing", ack, namespace=namespace)
        sio.on("echo", ack, namespace=namespace)
        sio.on("fanout", fanout, namespace=namespace)
    return sio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default=None, help="use the Redis client manager at this URL")
    args = parser.parse_args()
    raise_open_files()
    app = socketio.ASGIApp(create(args.redis))
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.keep_alive_timeout = 75
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
