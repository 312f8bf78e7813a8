"""Factor XI: logs are one stream of events on stdout, and the platform routes them."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal

import orjson

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# Who asked: the verified token's `sub`, never the token itself.
subject: ContextVar[str | None] = ContextVar("subject", default=None)

# Anything orjson has its own form for goes through `default=str`, as the standard encoder's would.
AS_STR = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
# Anything else on a record came from `extra=` and is a field (uvicorn's `color_message` is not).
STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class ContextFilter(logging.Filter):
    """Stamps each record with the release, the request (or job) id and the caller's subject."""

    def __init__(self, release: str | None) -> None:
        super().__init__()
        self.release = release

    def filter(self, record: logging.LogRecord) -> bool:
        record.release = self.release
        record.request_id = request_id.get()
        record.subject = subject.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: log routers parse it without configuration."""

    def __init__(self) -> None:
        super().__init__()
        # For what orjson refuses: a lone surrogate (no UTF-8 has one), an integer past 64 bits.
        self.escape = json.JSONEncoder(default=str).encode
        self.second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": self.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in STANDARD_RECORD_ATTRIBUTES and value is not None:
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(event, default=str, option=AS_STR).decode()
        except orjson.JSONEncodeError:
            return self.escape(event)

    def timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, e.g. `2026-01-31T12:00:00.123+00:00`."""
        whole = int(created)
        second, text = self.second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self.second = (whole, text)
        return f"{text}.{int((created - whole) * 1000):03d}+00:00"


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in STANDARD_RECORD_ATTRIBUTES and value is not None
        }
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


def configure_logging(
    level: int,
    log_format: Literal["json", "console"],
    release: str | None = None,
) -> None:
    """Send every log record of this process to stdout, once, in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter(release))

    # No line carries the caller, thread or process: skip looking them up.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    root = logging.getLogger()
    for existing in root.handlers[:]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)

    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The web edge writes the access lines (web/edge.py).
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
    # Warnings as log events, not bare text on stderr.
    logging.captureWarnings(True)
    # Alembic lists its plugins at INFO on every import.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
