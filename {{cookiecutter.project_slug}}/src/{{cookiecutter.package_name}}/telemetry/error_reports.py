"""Error reports (Sentry): every unhandled error of the web, the worker and the commands, with its context.

Imported only when SENTRY_DSN is set. The SDK's default integrations find Starlette and Celery by
themselves and catch what reaches `sys.excepthook` (the commands). Each report carries the release id,
the request id (or the job's) and, with tracing on, the trace id, so one search finds its log lines and
its trace. Nothing secret leaves: no local variables (they hold settings and URLs with passwords), no
cookies or auth headers, no request bodies unless SENTRY_SEND_REQUEST_BODIES allows them.
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from ..logs import request_id
from ..settings import Settings

# SQLAlchemy quotes a failed statement's parameters in its error message; they are user data (a request's
# fields), so they stay out of reports like request bodies do.
SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n\(Background|\Z)", re.DOTALL)
PARAMETERS_HIDDEN = "[parameters: hidden]"
# Seconds the SDK may take to send what it holds when the process exits: well inside the platform's 30.
FLUSH_SECONDS = 5.0


def start_error_reports(settings: Settings) -> None:
    """Report this process's unhandled errors (safe to call again in the same process: it replaces)."""
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        release=settings.release_id,
        server_name=settings.otel_service_name,
        # Cookies, auth headers, user IPs stay out of reports.
        send_default_pii=False,
        # Frames' locals would include the settings and connection URLs.
        include_local_variables=False,
        max_request_body_size="always" if settings.sentry_send_request_bodies else "never",
        # Errors only: traces are OpenTelemetry's job here, and sampling them twice would cost twice.
        traces_sample_rate=None,
        # Logged errors stay breadcrumbs; an unhandled error is reported once, by the integration that
        # caught it, not again for the log line that describes it.
        integrations=[LoggingIntegration(event_level=None)],
        shutdown_timeout=FLUSH_SECONDS,
        before_send=add_request_and_trace_ids if settings.tracing else add_request_id,
    )


def add_request_id(event: Any, hint: dict[str, Any]) -> Any:
    """Tag the report with the request (or job) it happened in, and hide the SQL parameters it quotes."""
    for exception in event.get("exception", {}).get("values", []):
        if isinstance(exception.get("value"), str):
            exception["value"] = SQL_PARAMETERS.sub(PARAMETERS_HIDDEN, exception["value"])
    rid = request_id.get()
    if rid is not None:
        event.setdefault("tags", {})["request_id"] = rid
    return event


def add_request_and_trace_ids(event: Any, hint: dict[str, Any]) -> Any:
    """...and with the trace, when tracing is on (only then is OpenTelemetry imported)."""
    from .tracing import current_trace_id

    trace_id = current_trace_id()
    if trace_id is not None:
        event.setdefault("tags", {})["trace_id"] = trace_id
    return add_request_id(event, hint)


def flush_reports() -> None:
    """Send what is queued: a pool process ends with `os._exit`, skipping the SDK's exit hook."""
    sentry_sdk.flush(timeout=FLUSH_SECONDS)
