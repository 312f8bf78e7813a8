"""Traces, metrics and error reports, each on only when its variables are set: the hubs call only this.

With every part off, no OpenTelemetry, Prometheus or Sentry package is even imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute

    from ..database import Reads
    from ..settings import Settings

# For the last spans, then the last error reports: well inside the platform's 30 s.
FLUSH_SECONDS = 5.0


def report_errors(settings: Settings) -> None:
    """Error reports for this process (every command, before anything else can fail)."""
    if settings.telemetry.error_reports.on:  # drop: error-reports
        from .error_reports import start_error_reports

        start_error_reports(settings)


def start_tracing(settings: Settings) -> None:
    """Traces for this process, and their ids on its log lines: the worker, the clock."""
    if settings.telemetry.tracing.on:  # drop: tracing
        from .tracing import start_tracing as start

        start(settings)


def start_web_worker(settings: Settings) -> None:
    """Each uvicorn worker is a fresh interpreter: its own error reports and traces."""
    report_errors(settings)
    start_tracing(settings)


def serve_web_metrics(settings: Settings) -> None:
    """In the parent of uvicorn's workers, so the metrics endpoint outlives each of them."""
    if settings.telemetry.metrics.on:  # drop: metrics
        from .metrics import serve_metrics

        serve_metrics(settings)


def web_middleware(settings: Settings, routes: list[BaseRoute], probes: frozenset[str]) -> list[Middleware]:
    """Outermost, so the request's span and its timing cover everything else, logging included."""
    from starlette.middleware import Middleware

    middleware: list[Middleware] = []
    if settings.telemetry.tracing.on:  # drop: tracing
        from .tracing import ServerSpans

        middleware.append(Middleware(ServerSpans, routes=routes, untraced_paths=probes))
    if settings.telemetry.metrics.on:  # drop: metrics
        from .metrics import WebMetrics

        middleware.append(Middleware(WebMetrics, routes=routes, untimed_paths=probes))
    return middleware


@contextmanager
def watching(settings: Settings, engine: AsyncEngine, reads: Reads) -> Iterator[None]:
    """For a web process's life: a span per statement, a gauge of pool connections; the last spans sent."""
    if settings.telemetry.tracing.on:  # drop: tracing
        from .tracing import trace_reads, trace_statements

        trace_statements(engine.sync_engine)
        # Not SQLAlchemy's events for reads: listening to them would take reads off their fast path.
        trace_reads(reads)
    if settings.telemetry.metrics.on:  # drop: metrics
        from .metrics import count_pool_connections

        count_pool_connections(engine.sync_engine, reads.engine.sync_engine)
    try:
        yield
    finally:
        flush(settings)


def watch_engines(settings: Settings, *engines: Engine) -> None:
    """A span per statement and a gauge of pool connections, for each engine the process made."""
    if settings.telemetry.tracing.on:  # drop: tracing
        from .tracing import trace_statements

        trace_statements(*engines)
    if settings.telemetry.metrics.on:  # drop: metrics
        from .metrics import count_pool_connections

        count_pool_connections(*engines)


def flush(settings: Settings) -> None:
    """At a web process's shutdown, inside the grace period: no recorded span is lost."""
    if settings.telemetry.tracing.on:  # drop: tracing
        from .tracing import flush_spans

        flush_spans(FLUSH_SECONDS)


def start_worker(settings: Settings, app: Celery, engine: Engine) -> None:
    """Before the pool processes fork: they inherit it."""
    start_tracing(settings)
    if settings.telemetry.metrics.on:  # drop: metrics
        from .metrics import count_jobs, queue_depth, serve_metrics

        # First: serving clears the directory the job and pool metrics write to.
        serve_metrics(settings, queue_depth(settings, app.conf.task_default_queue))
        count_jobs()
    watch_engines(settings, engine)
    if settings.telemetry.tracing.on:  # drop: tracing
        from .tracing import flush_spans_when_worker_stops

        flush_spans_when_worker_stops(FLUSH_SECONDS)
    if settings.telemetry.error_reports.on:  # drop: error-reports
        from celery import signals

        from .error_reports import flush_reports

        signals.worker_process_shutdown.connect(lambda **_: flush_reports(), weak=False)
