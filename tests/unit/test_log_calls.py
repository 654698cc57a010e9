"""No structlog call may pass a keyword its own signature already takes: `log.warning("x",
event=...)` raises `TypeError` (the first positional of every structlog method is named
`event`), so the failure path that logs it fails itself. That bug once turned every failed
Socket.IO emit into a 500 for a webhook whose message was already committed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import structlog

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("src", "loadtest", "operator", "scripts")
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical",
                         "fatal", "msg", "log", "bind", "new", "try_unbind", "unbind"})  # fmt: skip
# Keywords a structlog BoundLogger method takes for itself (`event`) or that `log()` takes.
RESERVED = frozenset({"event"})


def _logger_names(tree: ast.AST) -> set[str]:
    """Names assigned from `structlog.get_logger(...)` (or a `.bind(...)` of one)."""
    names = {"log", "logger"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            text = ast.unparse(func)
            if text.endswith("get_logger") or text.endswith(".bind"):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def reserved_keywords(source: str, filename: str = "<source>") -> list[str]:
    """`file:line call` for every log call in `source` that passes a reserved keyword."""
    tree = ast.parse(source, filename)
    names = _logger_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        is_logger = isinstance(receiver, ast.Name) and receiver.id in names
        if not is_logger or node.func.attr not in LOG_METHODS:
            continue
        for keyword in node.keywords:
            if keyword.arg in RESERVED:
                found.append(f"{filename}:{node.lineno} {ast.unparse(node)[:100]}")
    return found


def test_the_checker_finds_the_bug_it_is_for() -> None:
    source = (
        "import structlog\n"
        "log = structlog.get_logger(__name__)\n"
        "bound = log.bind(hotel_id=1)\n"
        "log.warning('realtime.emit_failed', event='message', error_class='X')\n"
        "bound.info('x', event='y')\n"
        "log.info('fine', socket_event='message')\n"
        "other.warning('not a logger', event='y')\n"
    )
    assert [line.split()[0] for line in reserved_keywords(source)] == ["<source>:4", "<source>:5"]


def test_the_keyword_really_breaks_structlog() -> None:
    """What the checker guards against, shown on structlog itself."""
    logger = structlog.wrap_logger(structlog.PrintLogger(), wrapper_class=structlog.BoundLogger)
    with pytest.raises(TypeError):
        logger.warning("realtime.emit_failed", event="message")


def test_no_log_call_in_the_tree_passes_event_as_a_keyword() -> None:
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += reserved_keywords(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


async def test_a_socket_handler_that_fails_unexpectedly_still_answers_its_ack() -> None:
    from hotelchat.entrypoints.web.sockets import answering

    async def broken(_self: object, _sid: str, _data: object = None) -> dict[str, object]:
        raise RuntimeError("a bug")

    assert await answering(broken)(None, "sid") == {"error": "internal"}
