"""Traces (OpenTelemetry): one trace per request, from the web through the queue to the worker and back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from celery import signals
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..database import COMPILED_READS, Reads
from ..settings import Settings
from ..web.routing import route_template

# Outlives the span, like the request id: errors are reported after it ends.
request_trace_id: ContextVar[str | None] = ContextVar("request_trace_id", default=None)

# Below the base URL in OTEL_EXPORTER_OTLP_ENDPOINT, as the spec says.
TRACES_PATH = "/v1/traces"


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
    # It also wraps Engine.connect, a pool checkout: a span per request saying nothing.
    unwrap(Engine, "connect")


def trace_reads(reads: Reads) -> None:
    """A span per read statement: reads run on the driver, out of the SQLAlchemy instrumentor's sight."""
    reads.observe = StatementSpans(reads.engine.url)


class StatementSpans:
    """Client spans named like the SQLAlchemy instrumentor's (`SELECT <db>`): reads and writes group."""

    def __init__(self, url: URL) -> None:
        self.tracer = trace.get_tracer(__name__)
        self.database = url.database or ""
        # The conventions' first ones: each attribute costs encoding per span.
        self.connection: dict[str, Any] = {"db.system": url.get_backend_name(), "db.name": self.database}
        # The reads are a handful of statements built once.
        self.known: dict[str, tuple[str, dict[str, Any]]] = {}

    def __call__(self, sql: str) -> StatementSpan:
        known = self.known.get(sql)
        if known is None:
            name = f"{sql.split(None, 1)[0]} {self.database}"
            known = (name, {**self.connection, "db.statement": sql})
            if len(self.known) < COMPILED_READS:
                self.known[sql] = known
        name, attributes = known
        return StatementSpan(self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes))


class StatementSpan:
    """Ends its span, with any error. Not current: nothing runs inside it."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        return self.span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
        self.span.end()


class AsgiHeaders(Getter[list[tuple[bytes, bytes]]]):
    """A caller's W3C trace context, from ASGI headers."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.encode("latin-1")
        return [value.decode("latin-1") for field, value in carrier if field == name] or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [field.decode("latin-1") for field, _ in carrier]


ASGI_HEADERS = AsgiHeaders()


class ServerSpans:
    """Each request a server span named by its route (`GET /items/{item_id}`), in its caller's trace.

    Not the ASGI instrumentation's dozen attributes: the ones the conventions require (bench/PROFILE.md).
    """

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], untraced_paths: frozenset[str]) -> None:
        self.app = app
        self.routes = routes
        # A trace per probe would bury the real ones.
        self.untraced_paths = untraced_paths
        self.tracer = trace.get_tracer(__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.untraced_paths:
            await self.app(scope, receive, send)
            return
        method, template = scope["method"], route_template(self.routes, scope)
        span = self.tracer.start_span(
            f"{method} {template}",
            context=propagate.extract(scope["headers"], getter=ASGI_HEADERS),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": template,
                "url.path": scope["path"],
                "url.scheme": scope["scheme"],
            },
        )
        request_trace_id.set(format(span.get_span_context().trace_id, "032x"))

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
                if message["status"] >= 500:
                    span.set_status(StatusCode.ERROR)
            await send(message)

        # Current inside, for the access log too; records an exception.
        with trace.use_span(span, end_on_exit=True):
            await self.app(scope, receive, send_with_status)


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
