"""OpenTelemetry traces: one trace from the Twilio webhook, through the reply job (the context
travels inside the job's arguments), to the OpenAI call, the Twilio send and the Socket.IO emit.

Configured with the standard OTEL_* variables and exported over OTLP/HTTP; it is on only when an
OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and
OTEL_SDK_DISABLED is not true. Off, the API's no-op tracer is all that runs: no SDK, no exporter,
no instrumentation hooks.
https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

TRACER = "hotelchat"
_configured = False


def enabled_by_environment() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(service_name: str, *, exporter: Any = None) -> bool:
    """Install the SDK with an OTLP exporter (or `exporter`, for tests) and instrument asyncpg
    and redis, if tracing is wanted. Returns whether it is on. Safe to call more than once."""
    global _configured  # noqa: PLW0603 - one tracer provider per process, by design of OTel
    if _configured:
        return True
    if exporter is None and not enabled_by_environment():
        return False
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
        )
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument()
    _configured = True
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def carrier() -> dict[str, str]:
    """The current trace context as W3C `traceparent`/`tracestate` headers, to put in a job."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    parent: Mapping[str, str] | None = None,
) -> Iterator[Span]:
    """A span named `name`; `parent` is a carrier from another process (a job's `trace`).
    An exception leaving the block marks the span as an error, with its class only."""
    token = None
    if parent:
        token = context.attach(propagate.extract(dict(parent)))
    try:
        with tracer().start_as_current_span(
            name, kind=kind, attributes=dict(attributes or {}), record_exception=False
        ) as current:
            try:
                yield current
            except BaseException as exc:
                current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
    finally:
        if token is not None:
            context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as hex, or None outside one."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def wrap_asgi(app: Any) -> Any:
    """`app` with a server span per HTTP request (when tracing is on). Socket.IO traffic, health
    checks, metrics and static files make no spans; nor does each ASGI send or receive."""
    if not _configured:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        excluded_urls="socket.io,healthz,readyz,metrics,static",
        exclude_spans=["receive", "send"],
    )
