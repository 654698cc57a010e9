"""Structured logs: one JSON object per line on stderr, from our code and from every library,
with the trace and span ids of the current span when tracing is on.

Log events name what happened (`inbound.stored`, `send.retry`) and carry ids and classes, never
message bodies, phone numbers, tokens or keys. Libraries that would log request parameters (the
Twilio SDK logs phone numbers at INFO) are held at WARNING. A last processor scrubs every line
anyway: configured secrets, anything shaped like a phone number, and the "Failing row contains"
detail PostgreSQL puts in constraint errors (it would quote a message's body).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from hotelchat.observability.tracing import current_ids

# Libraries whose INFO lines carry request details we must not log.
_QUIET = ("twilio", "httpx", "httpx2", "openai", "aiohttp.access", "asyncio", "pgserver")


_PHONE = re.compile(r"\+?\b\d[\d ().-]{7,18}\d\b")
_FAILING_ROW = re.compile(r"Failing row contains \(.*?\)\.?", re.DOTALL)
REDACTED = "[redacted]"


class Scrubber:
    """A structlog processor that removes secrets and personal data from every value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _FAILING_ROW.sub("Failing row contains (" + REDACTED + ")", text)
        return _PHONE.sub(_mask_phone, text)

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if isinstance(value, str):
                event[key] = self.scrub(value)
        return event


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    # Timestamps, durations and ids are digits too; only long digit runs are phone-shaped.
    if len(digits) < 9 or re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", match.group(0)):
        return match.group(0)
    return REDACTED


def add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    ids = current_ids()
    if ids is not None:
        event["trace_id"], event["span_id"] = ids
    return event


_scrubber = Scrubber()


def json_handler(stream: TextIO, fmt: str = "json") -> logging.Handler:
    """A handler writing our log lines (JSON, or key=value with `fmt="console"`) to `stream`."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _scrubber,
                renderer,
            ],
        )
    )
    return handler


def _shared() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        structlog.processors.format_exc_info,
    ]


def configure_logging(level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = ()) -> None:
    """Route structlog and the standard `logging` module to stderr as JSON (or readable
    key=value lines with `fmt="console"`), scrubbing `secrets` from every line. Safe to call
    more than once."""
    _scrubber.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
    shared = _shared()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [json_handler(sys.stderr, fmt)]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
