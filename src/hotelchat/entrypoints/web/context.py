"""Access to the process's `Container` from request handlers."""

from __future__ import annotations

from quart import current_app

from hotelchat.bootstrap import Container

EXTENSION = "hotelchat"
SOCKETIO = "socketio"


def container() -> Container:
    """The `Container` the app built before serving."""
    value: Container = current_app.extensions[EXTENSION]
    return value
