"""A request id for every request, the caller's if it is safe to log; one access line per request."""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import Scope

access_log = logging.getLogger(f"{__name__.partition('.')[0]}.web.access")

REQUEST_ID_HEADER = "x-request-id"
RAW_REQUEST_ID_HEADER = REQUEST_ID_HEADER.encode()
# Short and printable: a caller's id cannot forge or break log lines.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID if it is valid, else a fresh one."""
    for name, value in scope["headers"]:
        if name == RAW_REQUEST_ID_HEADER:
            given: str = value.decode("latin-1")
            if VALID_REQUEST_ID.fullmatch(given):
                return given
            break
    # 128 random bits (a UUID4 has 122), cheaper than uuid4().
    return os.urandom(16).hex()


def log_access(scope: Scope, status: int, started: float) -> None:
    """The access line: method, path, status and duration; the log filter adds the request id."""
    access_log.info(
        "%s %s %d",
        scope["method"],
        scope["path"],
        status,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
