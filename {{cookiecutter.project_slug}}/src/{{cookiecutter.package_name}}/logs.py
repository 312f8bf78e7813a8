"""Factor XI: logs are one stream of events on stdout, and the platform routes them.

Every process type calls `configure_logging()` once at start. It installs a single handler on the root
logger; uvicorn's loggers (run with `log_config=None`) and, later, Celery's propagate into it, so each event
is written once, in one format. Nothing here opens a file.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Literal

# The id of the request (or job) being handled; set by the web middleware, read by every log line.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
# (uvicorn adds `color_message`, a copy of the message with terminal colour codes.)
STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class ContextFilter(logging.Filter):
    """Stamps each record with the release that wrote it and the request (or job) it was written for."""

    def __init__(self, release: str | None) -> None:
        super().__init__()
        self.release = release

    def filter(self, record: logging.LogRecord) -> bool:
        record.release = self.release
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log routers and search tools parse without configuration.

    The web process formats one line per request, so this does as little as it can per line: the encoder is
    built once, and the date-and-second part of the time once per second.
    """

    def __init__(self) -> None:
        super().__init__()
        # `json.dumps(event, default=str)` would build a new encoder for every line.
        self.encode = json.JSONEncoder(default=str).encode
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
        return self.encode(event)

    def timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, e.g. `2026-01-31T12:00:00.123+00:00`."""
        whole = int(created)
        second, text = self.second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self.second = (whole, text)
        return f"{text}.{int((created - whole) * 1000):03d}+00:00"


class ConsoleFormatter(logging.Formatter):
    """A line a person can read in a terminal, with the same fields as the JSON form."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # A person at a terminal knows which release they run; every other field is shown.
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in STANDARD_RECORD_ATTRIBUTES and key != "release" and value is not None
        }
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


def configure_logging(
    level: int,
    log_format: Literal["json", "console"],
    release: str | None = None,
    filters: Sequence[logging.Filter] = (),
) -> None:
    """Send every log record of this process to stdout, once, in the chosen format.

    `filters` add fields to every line: telemetry's trace and span ids, when tracing is on.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter(release))
    for extra_fields in filters:
        handler.addFilter(extra_fields)

    # Facts no line of ours carries, which every record would otherwise look up: the caller's file and line
    # (a walk up the stack), the thread and the process (see "Optimization" in the logging documentation).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    root = logging.getLogger()
    for existing in root.handlers[:]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)

    # uvicorn's loggers keep no handlers of their own and propagate to the root handler above.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # uvicorn writes access lines only if this logger has a handler; the request-id middleware writes ours.
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
    # Python warnings become log events too, instead of bare text on stderr.
    logging.captureWarnings(True)
    # Alembic announces each of its built-in plugins at INFO whenever it is imported, as the web process
    # does to compare schema revisions: an inventory of library internals that no operator acts on.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
