"""Telemetry, each part switched on by its environment variables: traces, metrics, error reports."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings


def log_filters(settings: Settings) -> list[logging.Filter]:
    """What telemetry adds to every log line: the trace and span ids, when tracing is on."""
    if not settings.tracing:
        return []
    from .tracing import TraceIdFilter

    return [TraceIdFilter()]
