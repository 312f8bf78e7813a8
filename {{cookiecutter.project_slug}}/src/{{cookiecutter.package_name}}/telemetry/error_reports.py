"""Error reports (Sentry): every unhandled error of the web, the worker and the commands, with its context."""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from ..logs import request_id
from ..settings import Settings
from . import FLUSH_SECONDS

# SQLAlchemy quotes a failed statement's parameters: user data, kept out like request bodies.
SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n\(Background|\Z)", re.DOTALL)
PARAMETERS_HIDDEN = "[parameters: hidden]"


def start_error_reports(settings: Settings) -> None:
    """Safe to call again in one process: it replaces the last setup."""
    before_send = add_request_id
    if settings.telemetry.tracing.on:  # drop: tracing
        before_send = add_request_and_trace_ids
    sentry_sdk.init(
        dsn=settings.telemetry.error_reports.dsn,
        release=settings.release_id,
        server_name=settings.telemetry.tracing.service_name,  # drop: tracing
        # Cookies, auth headers, user IPs stay out of reports.
        send_default_pii=False,
        # Frames' locals would include the settings and connection URLs.
        include_local_variables=False,
        max_request_body_size="always" if settings.telemetry.error_reports.send_request_bodies else "never",
        # Errors only: traces are OpenTelemetry's job.
        traces_sample_rate=None,
        # An unhandled error is reported once, not again for its log line.
        integrations=[LoggingIntegration(event_level=None)],
        shutdown_timeout=FLUSH_SECONDS,
        before_send=before_send,
    )


def add_request_id(event: Any, hint: dict[str, Any]) -> Any:
    """Tag the request (or job) id; hide quoted SQL parameters."""
    for exception in event.get("exception", {}).get("values", []):
        if isinstance(exception.get("value"), str):
            exception["value"] = SQL_PARAMETERS.sub(PARAMETERS_HIDDEN, exception["value"])
    rid = request_id.get()
    if rid is not None:
        event.setdefault("tags", {})["request_id"] = rid
    return event


def add_request_and_trace_ids(event: Any, hint: dict[str, Any]) -> Any:  # drop: tracing
    """...and with the trace, when tracing is on (only then is OpenTelemetry imported)."""
    from .tracing import current_trace_id

    trace_id = current_trace_id()
    if trace_id is not None:
        event.setdefault("tags", {})["trace_id"] = trace_id
    return add_request_id(event, hint)


def flush_reports() -> None:
    """Send what is queued: a pool process ends with `os._exit`, skipping the SDK's exit hook."""
    sentry_sdk.flush(timeout=FLUSH_SECONDS)
