"""Traces (OpenTelemetry): one trace per request, from the web through the queue to the worker and back."""

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

# Outlives the span, like the request id: errors are reported after it ends.
request_trace_id: ContextVar[str | None] = ContextVar("request_trace_id", default=None)

# Below the base URL in OTEL_EXPORTER_OTLP_ENDPOINT, as the spec says.
TRACES_PATH = "/v1/traces"
# A trace per probe would bury the real ones.
UNTRACED_PATHS = "healthz,readyz"


def start_tracing(settings: Settings) -> TracerProvider:
    """Installed globally: the instrumentations look it up there."""
    resource = Resource.create(
        {SERVICE_NAME: settings.telemetry.tracing.service_name, SERVICE_VERSION: settings.release_id}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=NoLoneClientSpans()))
    # Off the request path; forked pool processes restart its thread.
    provider.add_span_processor(BatchSpanProcessor(span_exporter(settings)))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]  # untyped upstream
    # So a slow Redis shows in the request's trace.
    RedisInstrumentor().instrument(tracer_provider=provider)
    add_trace_ids_to_log_records()
    return provider


class NoLoneClientSpans(Sampler):
    """Drop root client spans: the worker's broker polling would make a one-span trace every second."""

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
    if settings.telemetry.tracing.exporter == "console":
        return ConsoleSpanExporter()
    endpoint = settings.telemetry.tracing.otlp_endpoint
    if endpoint is None:
        raise ValueError("OTLP needs OTEL_EXPORTER_OTLP_ENDPOINT (load_settings requires it)")
    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)


def trace_statements(*engines: Engine) -> None:
    """One span per SQL statement (pass an async engine's `sync_engine`)."""
    # One call: the instrumentor is a singleton and ignores a second.
    SQLAlchemyInstrumentor().instrument(
        engines=list(engines),
        tracer_provider=trace.get_tracer_provider(),
        # Its declared range stops below SQLAlchemy 2.1, whose event API it uses unchanged (test_tracing.py).
        skip_dep_check=True,
    )


def traced_app(app: ASGIApp, routes: list[BaseRoute]) -> ASGIApp:
    """Each request a server span, named by its route template (`POST /items/{id}`)."""

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
        # One span per request, not per ASGI message.
        exclude_spans=["receive", "send"],
    )


def current_trace_id() -> str | None:
    """The current span's trace, or that of the request whose span just ended."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else request_trace_id.get()


def flush_spans(timeout_seconds: float) -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=int(timeout_seconds * 1000))


def flush_spans_when_worker_stops(timeout_seconds: float) -> None:
    """Pool processes end with `os._exit`, skipping the SDK's exit hook: flush them on Celery's signals."""

    def flush(**_: Any) -> None:
        flush_spans(timeout_seconds)

    signals.worker_process_shutdown.connect(flush, weak=False, dispatch_uid="flush_spans_in_pool_process")
    signals.worker_shutdown.connect(flush, weak=False, dispatch_uid="flush_spans_in_worker")


def add_trace_ids_to_log_records() -> None:
    """Every log record made in a span carries its ids, whichever handler later writes it."""
    make_record = logging.getLogRecordFactory()

    def make_record_with_trace_ids(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return record

    logging.setLogRecordFactory(make_record_with_trace_ids)
