"""The web application: Quart for pages, the API and webhooks, python-socketio for live updates,
served together as one ASGI app by Hypercorn."""

from __future__ import annotations

import time
from typing import Any

import socketio
from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, Request, Response, g, request

from hotelchat import bootstrap
from hotelchat.adapters.realtime import close_server, create_server, start_server
from hotelchat.config import Settings
from hotelchat.domain.media import MAX_MEDIA_BYTES
from hotelchat.entrypoints.process import settle_heap
from hotelchat.entrypoints.web import assistant as assistant_api
from hotelchat.entrypoints.web import (
    dashboard,
    health,
    login,
    sockets,
    templates_api,
    webchat,
    webhooks,
)
from hotelchat.entrypoints.web import knowledge as knowledge_pages
from hotelchat.entrypoints.web import media as media_routes
from hotelchat.entrypoints.web import service_requests as service_request_api
from hotelchat.entrypoints.web.context import EXTENSION, SOCKETIO
from hotelchat.entrypoints.web.errors import register_error_handlers
from hotelchat.observability import metrics, tracing
from hotelchat.services import knowledge

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


IMPORT_PATH = "/api/knowledge/import"


class HotelChatRequest(Request):
    """Quart's request, with a larger body limit for knowledge-base imports only (Quart fixes
    the limit when the request is created, so it is chosen here, by path)."""

    def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
        if path == IMPORT_PATH:
            kwargs["max_content_length"] = knowledge.MAX_IMPORT_BYTES + 64 * 1024
        uploads = path.endswith("/uploads")  # media uploads (entrypoints/web/media.py)
        if uploads:
            kwargs["max_content_length"] = MAX_MEDIA_BYTES + 64 * 1024
        super().__init__(method, scheme, path, *args, **kwargs)
        if uploads:
            # Quart's multipart parser reads this property, not the body's limit.
            self.max_content_length = kwargs["max_content_length"]


def create_app(settings: Settings, *, settle: bool = False) -> Quart:
    """A Quart app that opens its `Container` before serving and closes it after. Its Socket.IO
    server is `app.extensions["socketio"]`; serve `create_asgi(app)` to include it. With
    `settle` (the served process, not tests), the heap is settled once the container is open
    (`entrypoints.process.settle_heap`)."""
    app = Quart(__name__)
    app.request_class = HotelChatRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    app.config["BODY_TIMEOUT"] = 30  # seconds to receive a request body
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 3600
    register_error_handlers(app)
    blueprints = (dashboard, knowledge_pages, service_request_api, assistant_api, webchat,
                  media_routes, templates_api)  # fmt: skip
    for module in (webhooks, health, login, *blueprints):
        app.register_blueprint(module.blueprint)

    server = create_server(
        redis_url=settings.require_redis_url(), allowed_origins=[settings.public_url]
    )
    app.extensions[SOCKETIO] = server
    app.extensions[webhooks.SLOTS] = webhooks.InFlightLimit(settings.webhook_max_in_flight)
    sockets.register(server, lambda: app.extensions[EXTENSION])

    @app.before_serving
    async def open_container() -> None:
        app.extensions[EXTENSION] = await bootstrap.build(
            settings, emitter=server, require_keys=True
        )
        await start_server(server)
        if settle:
            settle_heap()

    @app.after_serving
    async def close_container() -> None:
        await close_server(server)
        held = app.extensions.pop(EXTENSION, None)
        if held is not None:
            await held.close()

    @app.before_request
    async def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    async def finish(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # Route templates, not paths: the label stays bounded whatever the URL.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in HTTP_METHODS else "other"
        metrics.HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            metrics.HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
        return response

    return app


def create_asgi(app: Quart, *, trusted_proxy_hops: int = 0) -> Any:
    """Socket.IO at /socket.io/, everything else (and the lifespan events) to Quart, Twilio's
    webhooks past WEBHOOK_MAX_IN_FLIGHT shed first (`webhooks.ShedWebhooks`). Behind
    `trusted_proxy_hops` proxies, the client address comes from their X-Forwarded-For (the
    webhooks' signature checks never look at forwarded headers)."""
    asgi = tracing.wrap_asgi(
        webhooks.ShedWebhooks(
            socketio.ASGIApp(app.extensions[SOCKETIO], other_asgi_app=app),
            app.extensions[webhooks.SLOTS],
        )
    )
    if trusted_proxy_hops:
        return ProxyFixMiddleware(asgi, mode="legacy", trusted_hops=trusted_proxy_hops)
    return asgi
