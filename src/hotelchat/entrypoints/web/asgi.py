"""The ASGI application Hypercorn serves: `hotelchat.entrypoints.web.asgi:app`.

Settings are read, and logging configured, when a worker process imports this module.
"""

from __future__ import annotations

from hotelchat.config import Settings
from hotelchat.entrypoints.web.app import create_app, create_asgi
from hotelchat.logs import configure_logging
from hotelchat.observability import tracing

settings = Settings()
configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
tracing.configure("hotelchat-web")
app = create_asgi(create_app(settings, settle=True), trusted_proxy_hops=settings.trusted_proxy_hops)
