"""The log scrubber and trace ids in log lines."""

from __future__ import annotations

import io
import json
import logging

import structlog

from hotelchat.logs import REDACTED, Scrubber, json_handler


def test_secrets_phone_numbers_and_failing_rows_are_scrubbed() -> None:
    scrub = Scrubber(["sk-live-abcdef123456"]).scrub
    assert scrub("key sk-live-abcdef123456 used") == f"key {REDACTED} used"
    assert scrub("from whatsapp:+15551234567") == f"from whatsapp:{REDACTED}"
    assert scrub("wa_id 34612345678 here") == f"wa_id {REDACTED} here"
    assert scrub("call +44 20 7946 0958 now") == f"call {REDACTED} now"
    detail = "DETAIL:  Failing row contains (1, 2, inbound, guest, my secret body, SM12)."
    assert "my secret body" not in scrub(detail)


def test_what_is_not_personal_stays() -> None:
    scrub = Scrubber().scrub
    for text in ("2026-11-22T02:31:42.582792Z", "took 0.0523 s", "message_id 1234",
                 "trace 4bf92f3577b34da6a3ce929d0e0e4736", "status 200", "port 8000"):  # fmt: skip
        assert scrub(text) == text


def test_log_lines_carry_trace_and_span_ids() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    stream = io.StringIO()
    logger = logging.getLogger("hotelchat.test.trace")
    logger.addHandler(json_handler(stream))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with tracer.start_as_current_span("work") as span:
            structlog.get_logger("hotelchat.test.trace").info("inside", n=1)
            expected = format(span.get_span_context().trace_id, "032x")
    finally:
        logger.handlers.clear()
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == "inside"
    assert line["trace_id"] == expected
    assert len(line["span_id"]) == 16
