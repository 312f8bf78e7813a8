"""Traces (OpenTelemetry): one trace per request, from the web through the queue to the worker and back.

Imported only when the OpenTelemetry variables turn tracing on (`Settings.tracing`); with them unset, no
OpenTelemetry package is loaded and nothing here runs. The maintained instrumentation libraries make the
spans: ASGI for requests, SQLAlchemy for statements, Celery for publish and run (the trace context travels
in the message headers, W3C `traceparent`), Redis for broker commands. This module only wires them up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from celery import signals
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, TraceState
from opentelemetry.util.types import Attributes
from sqlalchemy import Engine
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Scope

from ..settings import Settings
from ..web.routing import route_template

# The trace of the request being handled, left set after its span ends (like the request id, see
# middleware.py): an unhandled error is reported after the server span has closed, and must name its trace.
request_trace_id: ContextVar[str | None] = ContextVar("request_trace_id", default=None)

# Where OTLP/HTTP receivers take spans, below the base URL in OTEL_EXPORTER_OTLP_ENDPOINT (the spec's rule).
TRACES_PATH = "/v1/traces"
# Seconds a stopping process may spend sending its last spans: well inside the platform's 30.
FLUSH_SECONDS = 5.0
# Probes are polled every few seconds by the platform; a trace per probe would bury the real ones.
UNTRACED_PATHS = "healthz,readyz"


def start_tracing(settings: Settings) -> TracerProvider:
    """The process's tracer provider, exporting in batches, installed as the global one.

    Global because the instrumentation libraries (and the log filter below) look it up there.
    """
    resource = Resource.create(
        {SERVICE_NAME: settings.otel_service_name, SERVICE_VERSION: settings.release_id}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=NoLoneClientSpans()))
    # Batches leave from a background thread, off the request path; forked pool processes restart it.
    provider.add_span_processor(BatchSpanProcessor(span_exporter(settings)))
    trace.set_tracer_provider(provider)
    # Publish spans of the web and the clock, and the run spans of jobs, joined by `traceparent` headers.
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]  # untyped upstream
    # The broker's commands (the publish's LPUSH), so a slow Redis shows in the request's trace.
    RedisInstrumentor().instrument(tracer_provider=provider)
    return provider


class NoLoneClientSpans(Sampler):
    """Keep every trace that starts with real work (a request, a job, a clock tick); drop the rest.

    The worker's broker polling (BRPOP, heartbeats) would otherwise make a one-span trace every second:
    a client call (Redis, SQL) with no parent belongs to no request, so it is not recorded.
    """

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        decision = Decision.DROP if kind is SpanKind.CLIENT else Decision.RECORD_AND_SAMPLE
        return SamplingResult(decision, attributes if decision is Decision.RECORD_AND_SAMPLE else None)

    def get_description(self) -> str:
        return "NoLoneClientSpans"


def span_exporter(settings: Settings) -> SpanExporter:
    if settings.otel_traces_exporter == "console":
        return ConsoleSpanExporter()
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None:
        raise ValueError("OTLP needs OTEL_EXPORTER_OTLP_ENDPOINT (load_settings requires it)")
    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)


def trace_statements(*engines: Engine) -> None:
    """One span per SQL statement on these engines (pass `async_engine.sync_engine` for an async one)."""
    # One call for all of them: the instrumentor is a singleton, and ignores a second `instrument()`.
    SQLAlchemyInstrumentor().instrument(
        engines=list(engines),
        tracer_provider=trace.get_tracer_provider(),
        # Its declared range stops below SQLAlchemy 2.1, whose event API it uses unchanged (test_tracing.py
        # shows the statements' spans arriving); without this it refuses and records nothing.
        skip_dep_check=True,
    )


def traced_app(app: ASGIApp, routes: list[BaseRoute]) -> ASGIApp:
    """The app wrapped so each request is a server span named by its route template (`POST /items/{id}`)."""

    def remember_trace(span: Span, scope: Scope) -> None:
        request_trace_id.set(format(span.get_span_context().trace_id, "032x"))

    def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
        template = route_template(routes, scope)
        return f"{scope.get('method', 'HTTP')} {template}", {"http.route": template}

    return OpenTelemetryMiddleware(
        app,
        excluded_urls=UNTRACED_PATHS,
        default_span_details=span_details,
        server_request_hook=remember_trace,
        # One span per request, not one per ASGI message: less to send, same story.
        exclude_spans=["receive", "send"],
    )


def current_trace_id() -> str | None:
    """The trace this code runs in: the current span's, or the request's whose span has just ended."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else request_trace_id.get()


def flush_spans(timeout_seconds: float) -> None:
    """Send every span recorded so far: a stopping process loses none."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=int(timeout_seconds * 1000))


def flush_spans_when_worker_stops(timeout_seconds: float) -> None:
    """Pool processes end with `os._exit`, skipping the SDK's exit hook: flush them on Celery's signals."""

    def flush(**_: Any) -> None:
        flush_spans(timeout_seconds)

    signals.worker_process_shutdown.connect(flush, weak=False, dispatch_uid="flush_spans_in_pool_process")
    signals.worker_shutdown.connect(flush, weak=False, dispatch_uid="flush_spans_in_worker")


class TraceIdFilter(logging.Filter):
    """Stamps a record written inside a span with its `trace_id` and `span_id`, in W3C trace context form."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True
