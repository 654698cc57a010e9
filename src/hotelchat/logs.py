"""Structured logs: one JSON object per line on stderr, from our code and from every library.

Log events name what happened (`inbound.stored`, `send.retry`) and carry ids and classes, never
message bodies, phone numbers, tokens or keys. Libraries that would log request parameters (the
Twilio SDK logs phone numbers at INFO) are held at WARNING.
"""

from __future__ import annotations

import logging
import sys

import structlog

# Libraries whose INFO lines carry request details we must not log.
_QUIET = ("twilio", "httpx", "httpx2", "openai", "aiohttp.access", "asyncio", "pgserver")


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and the standard `logging` module to stderr as JSON (or readable
    key=value lines with `fmt="console"`). Safe to call more than once."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
