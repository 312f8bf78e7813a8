"""Traces: turned on by the OpenTelemetry variables alone, one trace per request across web, queue and worker.

The web and the worker run as real processes exporting OTLP over HTTP/protobuf to a receiver in this test
process; the assertions are about what arrived over the wire.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM
from {{ cookiecutter.package_name }}.settings import load_settings
from {{ cookiecutter.package_name }}.telemetry.settings import TracingSettings

from processes import running_web, running_worker
from receivers import OtlpReceiver, ReceivedSpan, serving

# A job takes well under a second; this is the bound on a busy 2-core machine.
JOB_TIMEOUT = 30.0
# Seconds a process may take to stop (its spans sent) after SIGTERM: inside the platform's 30.
STOP_TIMEOUT = 25.0
HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}")
HEX_SPAN_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with serving(OtlpReceiver()) as receiver:
        yield receiver


@pytest.fixture
def traced_env(service_env: dict[str, str], otlp: OtlpReceiver) -> dict[str, str]:
    return {
        **service_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "RELEASE_ID": "v42",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def test_one_post_is_one_trace_covering_request_sql_publish_job_and_job_sql_sent_by_the_time_both_stop(
    traced_env: dict[str, str], otlp: OtlpReceiver, tmp_path: Path
) -> None:
    with running_web(traced_env, tmp_path) as web, running_worker(traced_env, tmp_path) as worker:
        created = httpx2.post(f"{web.base_url}/items", json={"name": "traced"}, timeout=JOB_TIMEOUT)
        assert created.status_code == 201, created.text
        item_id = created.json()["id"]
        worker.wait_for_event(lambda event: event.get("item_id") == item_id, JOB_TIMEOUT)
        # Stopped at once: the spans still in the exporters' batches must be sent on the way out.
        # uvicorn ends a graceful stop by re-raising the SIGTERM it caught (see test_twelve_factors.py).
        assert web.stop(STOP_TIMEOUT) == -signal.SIGTERM
        assert worker.stop(STOP_TIMEOUT) == 0

    spans = otlp.spans()
    trace_tree = span_tree(spans)
    print(trace_tree)  # shown by `pytest -s`: the span tree the closing note quotes
    (request,) = [span for span in spans if span.kind == "SPAN_KIND_SERVER" and span.name == "POST /items"]
    trace = [span for span in spans if span.trace_id == request.trace_id]
    by_id = {span.span_id: span for span in trace}
    (publish,) = [span for span in trace if span.kind == "SPAN_KIND_PRODUCER"]
    (job,) = [span for span in trace if span.kind == "SPAN_KIND_CONSUMER"]
    sql = [span for span in trace if span.scope.endswith("sqlalchemy")]
    request_sql = [span for span in sql if job not in ancestors(span, by_id)]
    job_sql = [span for span in sql if job in ancestors(span, by_id)]

    assert request.parent_id == ""
    assert {(span.service, span.version) for span in trace} == {(TracingSettings.SERVICE_NAME, "v42")}
    assert request.attributes["http.route"] == "/items"
    assert PROCESS_ITEM in publish.name
    assert PROCESS_ITEM in job.name
    assert request in ancestors(publish, by_id)
    # Across processes: the worker's span is a child of the web's publish, via the message's headers.
    assert job.parent_id == publish.span_id
    assert request_sql
    assert all(request in ancestors(span, by_id) for span in request_sql)
    assert any("INSERT" in span.name or "INSERT" in str(span.attributes) for span in request_sql)
    assert job_sql
    assert any("UPDATE" in span.name or "UPDATE" in str(span.attributes) for span in job_sql)

    rid = created.headers["x-request-id"]
    web_lines = [event for event in web.events() if event.get("request_id") == rid]
    job_lines = [event for event in worker.events() if event.get("item_id") == item_id]
    for line in web_lines + job_lines:
        assert line["trace_id"] == request.trace_id
        assert HEX_SPAN_ID.fullmatch(line["span_id"])
        assert line["span_id"] in by_id
    assert web_lines
    assert job_lines
    assert HEX_TRACE_ID.fullmatch(request.trace_id)


def test_a_read_continues_the_callers_trace_with_a_span_for_its_statement(
    traced_env: dict[str, str], otlp: OtlpReceiver, tmp_path: Path
) -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with running_web(traced_env, tmp_path) as web:
        created = httpx2.post(f"{web.base_url}/items", json={"name": "read"}, timeout=JOB_TIMEOUT)
        assert created.status_code == 201, created.text
        read = httpx2.get(
            f"{web.base_url}{created.headers['location']}",
            headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
            timeout=JOB_TIMEOUT,
        )
        assert read.status_code == 200, read.text
        assert httpx2.get(f"{web.base_url}/healthz", timeout=JOB_TIMEOUT).status_code == 200
        assert web.stop(STOP_TIMEOUT) == -signal.SIGTERM

    spans = otlp.spans()
    (request,) = [span for span in spans if span.name == "GET /items/{item_id}"]
    (statement,) = [span for span in spans if span.parent_id == request.span_id]
    assert request.kind == "SPAN_KIND_SERVER"
    assert (request.trace_id, request.parent_id) == (caller_trace, caller_span)
    assert request.attributes["http.route"] == "/items/{item_id}"
    assert request.attributes["http.response.status_code"] == 200
    assert statement.kind == "SPAN_KIND_CLIENT"
    assert statement.name.startswith("SELECT")
    assert "FROM items" in statement.attributes["db.statement"]
    # Probes are untraced.
    assert not [span for span in spans if "healthz" in span.name or "healthz" in str(span.attributes)]


def span_tree(spans: list[ReceivedSpan]) -> str:
    """Indented span names, children under parents, with kind and instrumentation scope."""
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    lines: list[str] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        lines.append(f"{'  ' * depth}{span.name} [{span.kind.removeprefix('SPAN_KIND_')}, {span.scope}]")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in children.get("", []):
        walk(root, 0)
    return "\n".join(lines)


def test_an_otlp_endpoint_alone_turns_tracing_on(required: pytest.MonkeyPatch) -> None:
    required.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")

    tracing = load_settings().telemetry.tracing

    assert (tracing.on, tracing.exporter) == (True, "otlp")
    assert tracing.service_name == TracingSettings.SERVICE_NAME
