"""Metrics (Prometheus): requests, jobs, queue depth and database pool, summed over every process.

Prometheus, not OTLP: every platform scrapes it, with no collector to run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from celery import signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from ..web.routing import route_template

# The scraper reaches the process from outside its container.
METRICS_HOST = "0.0.0.0"  # noqa: S104  # nosec B104


def serve_metrics(settings: Settings, extra: Collector | None = None) -> None:
    """Serve the sum of what this type's processes write to the directory; call it before they start."""
    port, directory = settings.telemetry.metrics.port, settings.telemetry.metrics.multiprocess_dir
    if port is None or directory is None:
        raise ValueError("metrics need METRICS_PORT and PROMETHEUS_MULTIPROC_DIR (load_settings checks both)")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]  # untyped upstream
    if extra is not None:
        registry.register(extra)
    start_http_server(port, addr=METRICS_HOST, registry=registry)


class WebMetrics:
    def __init__(self, app: ASGIApp, routes: list[BaseRoute], untimed_paths: frozenset[str]) -> None:
        self.app, self.routes, self.untimed_paths = app, routes, untimed_paths
        labels = ["method", "route", "status"]
        # The values live in the multiprocess files, not in a registry.
        self.requests = Counter("http_requests", "HTTP requests answered.", labels, registry=None)
        self.duration = Histogram(
            "http_request_duration_seconds", "Time to answer a request.", labels, registry=None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.untimed_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            labels = (scope["method"], route_template(self.routes, scope), str(status))
            self.requests.labels(*labels).inc()
            self.duration.labels(*labels).observe(time.perf_counter() - started)


def count_pool_connections(*engines: Engine) -> None:
    in_use = Gauge(
        "db_pool_connections_in_use",
        "Database connections checked out of the pool.",
        registry=None,
        multiprocess_mode="livesum",
    )
    for engine in engines:
        event.listen(engine.pool, "checkout", lambda *_: in_use.inc())
        event.listen(engine.pool, "checkin", lambda *_: in_use.dec())


def count_jobs() -> None:
    runs = Counter("jobs", "Jobs run, by outcome.", ["job", "outcome"], registry=None)
    duration = Histogram("job_duration_seconds", "Time a job ran.", ["job", "outcome"], registry=None)
    started: dict[str, float] = {}

    def job_started(task_id: str, **_: Any) -> None:
        started[task_id] = time.perf_counter()

    def job_ended(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
        began = started.pop(task_id, None)
        outcome = (state or "unknown").lower()
        runs.labels(task.name, outcome).inc()
        if began is not None:
            duration.labels(task.name, outcome).observe(time.perf_counter() - began)

    signals.task_prerun.connect(job_started, weak=False, dispatch_uid="metrics_job_started")
    signals.task_postrun.connect(job_ended, weak=False, dispatch_uid="metrics_job_ended")


class QueueDepth(Collector):
    """Messages waiting in the service's queue, read from Redis at each scrape."""

    def __init__(self, broker_url: str, queue: str) -> None:
        self.broker_url, self.queue = broker_url, queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("jobs_queued", "Jobs waiting in the queue.", labels=["queue"])
        # A scrape must not hang on a broken broker; the gauge is simply absent then.
        with redis.Redis.from_url(self.broker_url, socket_timeout=2, socket_connect_timeout=2) as client:
            try:
                family.add_metric([self.queue], float(client.llen(self.queue)))
            except redis.RedisError:
                return
        yield family


def queue_depth(settings: Settings, queue: str) -> QueueDepth | None:
    if settings.jobs.embedded_broker:
        return None
    return QueueDepth(settings.jobs.broker, queue)
