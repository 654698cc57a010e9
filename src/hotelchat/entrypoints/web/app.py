"""The Quart application factory."""

from __future__ import annotations

from quart import Quart, Response

from hotelchat import bootstrap
from hotelchat.config import Settings
from hotelchat.entrypoints.web import health, webhooks
from hotelchat.entrypoints.web.context import EXTENSION
from hotelchat.entrypoints.web.errors import register_error_handlers


def create_app(settings: Settings) -> Quart:
    """A Quart app that opens its `Container` before serving and closes it after."""
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    app.config["BODY_TIMEOUT"] = 30  # seconds to receive a request body
    register_error_handlers(app)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(health.blueprint)

    @app.before_serving
    async def open_container() -> None:
        app.extensions[EXTENSION] = await bootstrap.build(settings)

    @app.after_serving
    async def close_container() -> None:
        held = app.extensions.pop(EXTENSION, None)
        if held is not None:
            await held.close()

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app
