"""Web-chat guests as a browser runs them: `POST /chat/<hotel>/session` for a token, the `/guest`
Socket.IO namespace (websocket) with that token, `POST /chat/<hotel>/messages` to write. Each
guest comes from an address of its own (X-Forwarded-For through one trusted proxy hop, as behind
an ingress), so the per-address session limit applies per guest as it would in production.

Used by S5 (time to first token seen by the web chat) and by seed 003's tiers (many concurrent
guests having a conversation).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from loadtest.harness import HOTEL

TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class Turn:
    """One guest message: when it was sent (monotonic seconds), when its first `ai_delta` and
    its stored reply (`message` event) arrived, and what went wrong if anything."""

    sent: float
    first_token: float | None = None
    reply: float | None = None
    error: str | None = None

    @property
    def reply_seconds(self) -> float | None:
        return None if self.reply is None else self.reply - self.sent

    @property
    def ttft_seconds(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.sent


@dataclass
class Guest:
    """One web-chat guest of hotel `HOTEL` at `base` (connect, then `say`)."""

    base: str
    http: aiohttp.ClientSession
    address: str = field(default_factory=lambda: f"10.{secrets.randbelow(250)}."
                         f"{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}")  # fmt: skip
    token: str = ""
    client: socketio.AsyncClient | None = None
    _waiting: dict[int, Turn] = field(default_factory=dict)
    _latest: Turn | None = None
    _done: dict[int, asyncio.Event] = field(default_factory=dict)

    async def connect(self) -> None:
        """Start the session and open the socket; raises on any failure."""
        headers = {"X-Forwarded-For": self.address}
        async with self.http.post(
            f"{self.base}/chat/{HOTEL}/session", json={"name": "Load Guest"}, headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"session: {response.status}")
            self.token = (await response.json())["token"]
        client = socketio.AsyncClient(reconnection=False)
        client.on("ai_delta", self._delta, namespace="/guest")
        client.on("message", self._message, namespace="/guest")
        await client.connect(
            self.base,
            headers=headers,
            auth={"token": self.token},
            namespaces=["/guest"],
            transports=["websocket"],
            wait_timeout=15,
        )
        self.client = client

    async def _delta(self, data: Any = None) -> None:
        turn = self._waiting.get(int((data or {}).get("reply_to", -1)))
        if turn is not None and turn.first_token is None:
            turn.first_token = time.monotonic()

    async def _message(self, data: Any = None) -> None:
        message_id = int((data or {}).get("id", -1))
        for inbound, turn in list(self._waiting.items()):
            if message_id > inbound and turn.reply is None:
                turn.reply = time.monotonic()
                self._done[inbound].set()
                del self._waiting[inbound]
                return

    async def say(self, text: str, timeout: float) -> Turn:
        """Send `text` and wait up to `timeout` seconds for the reply."""
        turn = Turn(time.monotonic())
        headers = {"Authorization": f"Bearer {self.token}", "X-Forwarded-For": self.address}
        try:
            async with self.http.post(
                f"{self.base}/chat/{HOTEL}/messages",
                json={"body": text, "client_id": secrets.token_hex(16)},
                headers=headers,
            ) as response:
                if response.status not in {200, 201}:
                    turn.error = f"send {response.status}"
                    return turn
                inbound = int((await response.json())["id"])
        except (aiohttp.ClientError, TimeoutError) as exc:
            turn.error = type(exc).__name__
            return turn
        done = self._done.setdefault(inbound, asyncio.Event())
        self._waiting[inbound] = turn
        try:
            await asyncio.wait_for(done.wait(), max(0.1, timeout - (time.monotonic() - turn.sent)))
        except TimeoutError:
            turn.error = "no_reply"
            self._waiting.pop(inbound, None)
        return turn

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()
