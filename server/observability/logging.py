"""Structured JSON logs: one object per line, and the one-line-per-request access log.

Request lines carry ids, route, attempts, tokens, cost and latency, never prompt text, provider
keys or gateway keys (only the key's id). ``configure_logging`` is what the CLI calls once.
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO

import orjson

from server.core.loops import running_loop
from server.core.secrets import scrub

REQUEST_LOGGER = "switchboard.requests"
request_logger = logging.getLogger(REQUEST_LOGGER)

# Where request lines go once ``configure_logging`` ran: written directly, because the stdlib
# record machinery (LogRecord, caller lookup, handler lock) costs ~50 µs a line on this machine.
# Until then they go through the `switchboard.requests` logger. Lines finished in one event-loop
# iteration are written together at its end (one write and flush, not one per request); a kill
# can lose at most that iteration's lines, never a usage row (the ledger journals its own).
_sink: Callable[[bytes], object] | None = None
_sink_enabled = True
_pending: list[bytes] = []

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, then the record's ``fields`` (or
    ``msg`` for ordinary log calls)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            data.update(fields)
        else:
            data["msg"] = record.getMessage()
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # Log lines are read by people and shipped to other systems: no secret in any form.
        return scrub(orjson.dumps(data, default=str).decode())


def configure_logging(
    level: str = "info", *, stream: IO[str] | None = None, requests: bool = True
) -> None:
    """Sends every log record (root logger) and, when `requests`, one line per request to
    `stream` (stderr) as JSON lines (``LoggingConfig``: level, requests)."""
    global _sink, _sink_enabled
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # httpx logs every upstream request at INFO: a second line per request that repeats ours
    # and costs measurable CPU on the hot path.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    flush_lines()
    binary = getattr(target, "buffer", None)
    if binary is not None:

        def write(lines: bytes) -> None:
            binary.write(lines)
            binary.flush()

        _sink = write
    else:
        _sink = lambda lines: target.write(lines.decode())  # noqa: E731
    _sink_enabled = requests and root.level <= logging.INFO


def log_request(fields: Mapping[str, object]) -> None:
    """Emits one request line (INFO): straight to the configured sink, else via logging."""
    sink = _sink
    if sink is not None:
        if _sink_enabled:
            record: dict[str, object] = {
                "ts": _iso(time.time()),
                "level": "info",
                "logger": REQUEST_LOGGER,
            }
            record.update(fields)
            _pending.append(orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE))
            if len(_pending) == 1:
                try:
                    running_loop().call_soon(flush_lines)
                except RuntimeError:
                    flush_lines()  # no loop (CLI, tests): at once
        return
    if request_logger.isEnabledFor(logging.INFO):
        request_logger.info("request", extra={"fields": fields})


def flush_lines() -> None:
    """Writes the request lines not written yet (the loop does this each iteration)."""
    if _pending and _sink is not None:
        lines = b"".join(_pending)
        _pending.clear()
        _sink(lines)


atexit.register(flush_lines)

_second = -1
_second_text = ""


def _iso(created: float) -> str:
    global _second, _second_text
    secs = int(created)
    if secs != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _second = secs
    return f"{_second_text}.{int((created - secs) * 1000):03d}Z"
