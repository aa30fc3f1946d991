"""Structured logs: one JSON object per line on stderr, tagged with the current request id.

A small ``logging.Formatter`` rather than a dependency: the fields are the record's time, level,
logger and message, the ``request_id`` from a contextvar, and whatever the caller passed as
``extra={...}``. Two guards keep secrets and uploads out of log storage whatever a caller passes:
anything that looks like a JWT is masked, and ``bytes`` values are replaced by their length.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str] = ContextVar("face3d_request_id", default="")
"""Set by the API middleware for each request; every log line emitted while serving it carries it."""

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{16,}")
# LogRecord's own attributes, plus uvicorn's ANSI-coloured duplicate of the message.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def new_request_id() -> str:
    return uuid.uuid4().hex


def redact(text: str) -> str:
    """Mask bearer credentials and JWT-shaped strings."""
    return _JWT.sub("<redacted-jwt>", _BEARER.sub(r"\1<redacted>", text))


def _safe(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Render a LogRecord as one JSON line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _safe(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    """Route the root logger (and uvicorn's loggers) to one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers[:] = []
        uv.propagate = True
