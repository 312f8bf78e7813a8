"""The conformance suite's probe: what a process does that a factor forbids, seen from inside it.

Never part of the service. The tests put this folder on PYTHONPATH and name a folder for the records in
FACTOR_PROBE_DIR; Python then imports this module as every process of the service starts (uvicorn's spawned
workers included; Celery's forked pool processes inherit it). An audit hook (PEP 578) writes one JSON line per
event that matters to a file per process: files opened for writing, programs started, native libraries
loaded, sockets bound and connected; and, once per handler, each logging handler that receives a record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any

DIRECTORY = os.environ.get("FACTOR_PROBE_DIR")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
PROGRAM_EVENTS = frozenset(
    {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.forkpty"}
)
FILE_EVENTS = frozenset({"os.mkdir", "os.rename", "os.remove", "os.symlink", "os.link", "os.truncate"})
OTHER_EVENTS = frozenset({"ctypes.dlopen", "socket.bind", "socket.connect", "syslog.openlog"})
WATCHED = PROGRAM_EVENTS | FILE_EVENTS | OTHER_EVENTS | {"open"}

_recording = threading.local()
_output: dict[int, int] = {}
_handlers_seen: set[int] = set()


def record(event: str, *args: Any) -> None:
    """Append one line to this process's record file (reopened after a fork: one file per process)."""
    if getattr(_recording, "active", False) or DIRECTORY is None:
        return
    _recording.active = True
    try:
        pid = os.getpid()
        if pid not in _output:
            path = os.path.join(DIRECTORY, f"{pid}.jsonl")
            _output[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = {"event": event, "args": [describe(arg) for arg in args], "pid": pid, "ppid": os.getppid()}
        os.write(_output[pid], (json.dumps(line) + "\n").encode())
    finally:
        _recording.active = False


def describe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list | tuple):
        return [describe(item) for item in value]
    return repr(value)


def opens_for_writing(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return any(letter in mode for letter in "wax+")
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in WATCHED:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or not opens_for_writing(mode, flags):
            return
        record("open", path, mode)
    elif event in ("socket.bind", "socket.connect"):
        record(event, args[1])
    else:
        record(event, *args)


def destination(handler: logging.Handler) -> str:
    """Where a handler sends records: a stream's file descriptor, a file's path, or its class."""
    if isinstance(handler, logging.FileHandler):
        return f"file {handler.baseFilename}"
    stream = getattr(handler, "stream", None)
    try:
        return f"fd {stream.fileno()}" if stream is not None else "no stream"
    except (AttributeError, OSError, ValueError):
        return f"stream {stream!r}"


def watch_handlers() -> None:
    """Record each handler the first time a record reaches it, however it was attached."""
    call_handlers = logging.Logger.callHandlers

    def recording_call_handlers(self: logging.Logger, log_record: logging.LogRecord) -> None:
        logger: logging.Logger | None = self
        while logger is not None:
            for handler in logger.handlers:
                if id(handler) not in _handlers_seen:
                    _handlers_seen.add(id(handler))
                    kind = f"{type(handler).__module__}.{type(handler).__qualname__}"
                    record("logging.handler", logger.name, kind, destination(handler))
            logger = logger.parent if logger.propagate else None
        call_handlers(self, log_record)

    logging.Logger.callHandlers = recording_call_handlers  # type: ignore[method-assign, assignment]


if DIRECTORY is not None:
    record("start", sys.argv, sys.executable)
    sys.addaudithook(audit)
    watch_handlers()
