"""Telemetry, each part switched on by its environment variables: traces, metrics, error reports."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings

# For the last spans, then the last error reports: well inside the platform's 30 s.
FLUSH_SECONDS = 5.0


def log_filters(settings: Settings) -> list[logging.Filter]:
    """Trace and span ids on every log line, when tracing is on."""
    if not settings.tracing:
        return []
    from .tracing import TraceIdFilter

    return [TraceIdFilter()]
