"""Socket.IO namespaces: `/agent` for the dashboard, `/guest` for the web chat.

Every connection is authenticated when it connects: agents by their session cookie, guests by
their signed token (`auth: {token}`). Rooms come from that identity, never from the client: an
agent is put in their hotel's room, and in a conversation's room only after the server found that
conversation in the agent's hotel; a guest is put in their own conversation's room.

Client events are validated (type, size, fields) and answered through the ack: `{"ok": true}` or
`{"error": <code>}`. A client that misses events (a dropped connection, a Redis restart) catches
up by fetching messages after its last-seen id; the events only say that something changed.

Presence: each agent socket is online or away (the page reports when its tab is hidden). A
change is not broadcast at once: each web process gathers the hotel's changes for
`PRESENCE_WINDOW_SECONDS` and then sends the hotel's room one `presence` event,
`{agents: [{agent_id, name, status}]}`, with the agents that changed as the registry now has them
(an agent is online while any of their tabs is). So n agents connecting together cost a few
events to each of them rather than one per connect (n² frames for the room). A connecting socket
gets the whole list at once (`presence_list`); keep-alives that change nothing send nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from http.cookies import CookieError, SimpleCookie
from typing import Any

import socketio
import structlog

from hotelchat.adapters.realtime import RedisPresence
from hotelchat.bootstrap import Container
from hotelchat.domain.conversation import (
    AGENT_NAMESPACE,
    GUEST_NAMESPACE,
    conversation_room,
    guest_room,
    hotel_room,
)
from hotelchat.domain.errors import (
    HotelChatError,
    NotFound,
    PasswordChangeRequired,
    Unauthenticated,
)
from hotelchat.domain.model import Channel
from hotelchat.entrypoints.web.security import SESSION_COOKIE
from hotelchat.observability import metrics
from hotelchat.services import auth, webchat

log = structlog.get_logger(__name__)

MAX_ID = 2**62
TYPING_EVERY = 1.0  # seconds: typing events from one socket are forwarded at most this often


Handler = Callable[..., Awaitable[dict[str, Any]]]

# Presence changes of one hotel are sent together, at most once per window (seconds) per process.
PRESENCE_WINDOW_SECONDS = 0.5
# Agents whose change may wait in one process; past this, the waiting changes are sent at once.
PRESENCE_MAX_PENDING = 10_000


class PresenceBatch:
    """Gathers presence changes per hotel and sends each hotel's after `window` seconds, in one
    call of `send(hotel_id, {agent_id: name})`. At most `max_pending` agents wait across all
    hotels; a change past that sends its hotel's at once. Sends run as tasks of their own; a
    failing send is logged (the next change, or a reconnect's `presence_list`, corrects it)."""

    def __init__(
        self,
        send: Callable[[int, dict[int, str]], Awaitable[None]],
        *,
        window: float = PRESENCE_WINDOW_SECONDS,
        max_pending: int = PRESENCE_MAX_PENDING,
    ) -> None:
        self._send = send
        self._window = window
        self._max_pending = max_pending
        self._pending: dict[int, dict[int, str]] = {}
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled: set[int] = set()

    def changed(self, hotel_id: int, agent_id: int, name: str) -> None:
        """Note that `agent_id`'s presence in `hotel_id` changed."""
        agents = self._pending.setdefault(hotel_id, {})
        if agent_id not in agents:
            self._count += 1
        agents[agent_id] = name
        if self._count > self._max_pending:
            self._start(self._flush(hotel_id))
        elif hotel_id not in self._scheduled:
            self._scheduled.add(hotel_id)
            self._start(self._flush_later(hotel_id))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, hotel_id: int) -> None:
        try:
            await asyncio.sleep(self._window)
        finally:
            self._scheduled.discard(hotel_id)
        await self._flush(hotel_id)

    async def _flush(self, hotel_id: int) -> None:
        agents = self._pending.pop(hotel_id, None)
        if not agents:
            return
        self._count -= len(agents)
        try:
            await self._send(hotel_id, agents)
        except Exception as exc:  # noqa: BLE001 - best effort, as every emit is
            log.warning("presence.send_failed", hotel_id=hotel_id, error_class=type(exc).__name__)


def answering(handler: Handler) -> Handler:
    """Every client event gets an answer through its ack: a known failure as its code, anything
    else as `internal` (logged with its class); a handler never dies silently."""

    @functools.wraps(handler)
    async def wrapper(self: Any, sid: str, data: object = None) -> dict[str, Any]:
        try:
            return await handler(self, sid, data)
        except HotelChatError as exc:
            return {"error": exc.code}
        except Exception as exc:  # the ack must always be answered
            log.exception(
                "socket.event_failed", socket_event=handler.__name__, error_class=type(exc).__name__
            )
            return {"error": "internal"}

    return wrapper


def _cookie(environ: dict[str, Any], name: str) -> str | None:
    raw = environ.get("HTTP_COOKIE", "")
    if not raw or len(raw) > 8192:
        return None
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def _conversation_id(data: object) -> int | None:
    if not isinstance(data, dict) or len(data) > 4:
        return None
    value = data.get("conversation_id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < MAX_ID:
        return None
    return value


class AgentNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """The dashboard's live channel."""

    def __init__(self, container: Callable[[], Container]) -> None:
        super().__init__(AGENT_NAMESPACE)
        self._container = container
        self.presence = PresenceBatch(self._send_presence)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth_data: Any = None) -> None:
        metrics.SOCKET_RECEIVED.labels(AGENT_NAMESPACE, "connect").inc()
        deps = self._container().deps
        try:
            session = await auth.session_for(deps, _cookie(environ, SESSION_COOKIE))
        except (Unauthenticated, PasswordChangeRequired):
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        await self.save_session(
            sid,
            {
                "agent_id": session.agent_id,
                "name": session.display_name,
                "hotel_id": session.hotel_id,
                "token": _cookie(environ, SESSION_COOKIE),
                "watching": None,
                "channel": None,
                "typed_at": 0.0,
                "status": "connecting",
            },
        )
        await self.enter_room(sid, hotel_room(session.hotel_id))
        metrics.SOCKET_CLIENTS.labels(AGENT_NAMESPACE).inc()
        await self._presence(sid, "online")
        # Who was here already: later changes arrive as `presence` events.
        agents = await self._registry().agents(session.hotel_id)
        await self.emit("presence_list", {"agents": agents}, to=sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        metrics.SOCKET_CLIENTS.labels(AGENT_NAMESPACE).dec()
        with contextlib.suppress(KeyError):
            await self._presence(sid, "offline")

    @answering
    async def on_watch(self, sid: str, data: object = None) -> dict[str, Any]:
        """Follow one conversation of the agent's hotel: `{conversation_id}`."""
        metrics.SOCKET_RECEIVED.labels(AGENT_NAMESPACE, "watch").inc()
        conversation_id = _conversation_id(data)
        if conversation_id is None:
            return {"error": "invalid"}
        state = await self.get_session(sid)
        deps = self._container().deps
        try:
            # The session is checked again: a logged-out agent's socket watches nothing more.
            session = await auth.session_for(deps, state["token"])
        except (Unauthenticated, PasswordChangeRequired):
            await self.disconnect(sid)
            return {"error": "unauthorized"}
        summary = await deps.inbox.conversation(session.hotel_id, conversation_id)
        if summary is None or session.hotel_id != state["hotel_id"]:
            return {"error": "not_found"}
        if state["watching"] is not None:
            await self.leave_room(sid, conversation_room(state["watching"]))
        await self.enter_room(sid, conversation_room(conversation_id))
        state["watching"], state["channel"] = conversation_id, summary.channel.value
        await self.save_session(sid, state)
        return {"ok": True}

    @answering
    async def on_unwatch(self, sid: str, data: object = None) -> dict[str, Any]:
        metrics.SOCKET_RECEIVED.labels(AGENT_NAMESPACE, "unwatch").inc()
        state = await self.get_session(sid)
        if state["watching"] is not None:
            await self.leave_room(sid, conversation_room(state["watching"]))
            state["watching"] = None
            await self.save_session(sid, state)
        return {"ok": True}

    @answering
    async def on_typing(self, sid: str, data: object = None) -> dict[str, Any]:
        """The agent is typing in the conversation they watch (throttled)."""
        metrics.SOCKET_RECEIVED.labels(AGENT_NAMESPACE, "typing").inc()
        conversation_id = _conversation_id(data)
        state = await self.get_session(sid)
        if conversation_id is None:
            return {"error": "invalid"}
        if conversation_id != state["watching"]:
            return {"error": "not_watching"}
        now = time.monotonic()
        if now - state["typed_at"] < TYPING_EVERY:
            return {"ok": True}
        state["typed_at"] = now
        await self.save_session(sid, state)
        payload = {"conversation_id": conversation_id, "agent_id": state["agent_id"],
                   "name": state["name"]}  # fmt: skip
        await self.emit("typing", payload, room=conversation_room(conversation_id), skip_sid=sid)
        if state["channel"] == Channel.WEB.value:
            await self.server.emit(
                "typing", {"who": "agent"}, room=guest_room(conversation_id),
                namespace=GUEST_NAMESPACE,
            )  # fmt: skip
        return {"ok": True}

    @answering
    async def on_presence(self, sid: str, data: object = None) -> dict[str, Any]:
        """`{status: "online" | "away"}` from the page: when its tab is shown or hidden, and
        every 30 seconds to stay listed."""
        metrics.SOCKET_RECEIVED.labels(AGENT_NAMESPACE, "presence").inc()
        if not isinstance(data, dict) or data.get("status") not in ("online", "away"):
            return {"error": "invalid"}
        await self._presence(sid, str(data["status"]))
        return {"ok": True}

    def _registry(self) -> RedisPresence:
        container = self._container()
        return RedisPresence(container.redis, timeout=container.settings.redis_timeout_seconds)

    async def _presence(self, sid: str, status: str) -> None:
        """Record the socket's status; a change is announced with the hotel's next batch, a
        keep-alive (the same status again) only refreshes the registry."""
        state = await self.get_session(sid)
        changed = state["status"] != status or status == "offline"
        state["status"] = status
        await self.save_session(sid, state)
        registry = self._registry()
        if status == "offline":
            await registry.remove(state["hotel_id"], sid)
        else:
            await registry.set(state["hotel_id"], sid, state["agent_id"], state["name"], status)
        if changed:
            self.presence.changed(state["hotel_id"], state["agent_id"], state["name"])

    async def _send_presence(self, hotel_id: int, agents: dict[int, str]) -> None:
        """One `presence` event to the hotel's room: each changed agent as the registry has
        them now (offline when none of their sockets is left)."""
        try:
            registry = self._registry()
        except KeyError:
            return  # the process is shutting down (its container is closed): nobody to tell
        present = {a["agent_id"]: a for a in await registry.agents(hotel_id)}
        changes = [
            present.get(agent_id, {"agent_id": agent_id, "name": name, "status": "offline"})
            for agent_id, name in sorted(agents.items())
        ]
        await self.emit("presence", {"agents": changes}, room=hotel_room(hotel_id))


class GuestNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """The web chat's live channel."""

    def __init__(self, container: Callable[[], Container]) -> None:
        super().__init__(GUEST_NAMESPACE)
        self._container = container

    async def on_connect(self, sid: str, environ: dict[str, Any], auth_data: Any = None) -> None:
        metrics.SOCKET_RECEIVED.labels(GUEST_NAMESPACE, "connect").inc()
        token = auth_data.get("token") if isinstance(auth_data, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        try:
            guest = await webchat.guest_from_token(self._container().deps, token)
        except (Unauthenticated, NotFound):
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        except HotelChatError as exc:
            log.warning("guest_socket.refused", error=exc.code)
            raise socketio.exceptions.ConnectionRefusedError("unavailable") from None
        await self.save_session(sid, {"conversation_id": guest.conversation_id, "typed_at": 0.0})
        await self.enter_room(sid, guest_room(guest.conversation_id))
        metrics.SOCKET_CLIENTS.labels(GUEST_NAMESPACE).inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        metrics.SOCKET_CLIENTS.labels(GUEST_NAMESPACE).dec()

    @answering
    async def on_typing(self, sid: str, data: object = None) -> dict[str, Any]:
        """The guest is typing: shown to agents watching their conversation (throttled)."""
        metrics.SOCKET_RECEIVED.labels(GUEST_NAMESPACE, "typing").inc()
        state = await self.get_session(sid)
        now = time.monotonic()
        if now - state["typed_at"] >= TYPING_EVERY:
            state["typed_at"] = now
            await self.save_session(sid, state)
            await self.server.emit(
                "typing",
                {"conversation_id": state["conversation_id"], "guest": True},
                room=conversation_room(state["conversation_id"]),
                namespace=AGENT_NAMESPACE,
            )
        return {"ok": True}


def register(server: socketio.AsyncServer, container: Callable[[], Container]) -> None:
    """Mount both namespaces on `server`; `container` gives the process's `Container`."""
    server.register_namespace(AgentNamespace(container))
    server.register_namespace(GuestNamespace(container))
