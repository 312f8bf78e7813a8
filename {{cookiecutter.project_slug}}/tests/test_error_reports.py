"""Error reports: with SENTRY_DSN set, unhandled errors of the web, the worker and the commands reach Sentry,
each with the release, the request id and the trace id, and without request bodies or secrets.

The receiver is a real HTTP endpoint on loopback that takes the real Sentry SDK's envelopes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.jobs.celery_app import create_celery
from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM

from conftest import SECRET_KEY, UNREACHABLE_DATABASE_URL, settings_for, url_string
from processes import run_command, running_web, running_worker, wait_until
from receivers import (
    OtlpReceiver,  # drop: tracing
    SentryReceiver,
    serving,
)

# Reports leave from a background thread; this bounds their arrival on a busy machine.
REPORT_TIMEOUT = 30.0
# Sent in the failing request's body: it must not appear in any report.
BODY_MARKER = "body-that-must-stay-private"
HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def report_where(
    sentry: SentryReceiver, matches: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    return wait_until(
        lambda: next((event for event in sentry.events() if matches(event)), None), REPORT_TIMEOUT, what
    )


def test_unhandled_errors_of_web_worker_and_command_are_reported_with_release_request_and_trace_ids(
    service_env: dict[str, str], empty_database_url: URL, redis_url: str, tmp_path: Path
) -> None:
    with (
        serving(SentryReceiver()) as sentry,
        serving(OtlpReceiver()) as otlp,  # drop: tracing
    ):
        env = {
            **service_env,
            # A database without the schema: every query is an error no handler expects (a bug, a 500).
            "DATABASE_URL": url_string(empty_database_url),
            "SENTRY_DSN": sentry.dsn(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,  # drop: tracing
            "RELEASE_ID": "v7",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        with running_web(env, tmp_path) as web, running_worker(env, tmp_path):
            failed = httpx2.post(
                f"{web.base_url}/items",
                json={"name": BODY_MARKER},
                headers={"X-Request-ID": "reported-request"},
                timeout=30,
            )
            web_report = report_where(
                sentry,
                lambda event: event.get("tags", {}).get("request_id") == "reported-request",
                "web report",
            )
            job = create_celery(settings_for(empty_database_url, redis_url)).send_task(PROCESS_ITEM, args=[1])
            job_report = report_where(
                sentry, lambda event: event.get("tags", {}).get("request_id") == job.id, "job report"
            )
        command = run_command(["migrate"], {**env, "DATABASE_URL": UNREACHABLE_DATABASE_URL}, tmp_path)
        command_report = report_where(
            sentry, lambda event: event not in (web_report, job_report), "command report"
        )

    assert failed.status_code == 500
    assert command.returncode != 0
    for report in (web_report, job_report, command_report):
        assert report["release"] == "v7"
        assert report["exception"]["values"]
    assert HEX_TRACE_ID.fullmatch(web_report["tags"]["trace_id"])  # drop: tracing
    assert HEX_TRACE_ID.fullmatch(job_report["tags"]["trace_id"])  # drop: tracing
    # Nothing private left the service: no request body, no secret key, no database password.
    raw = sentry.raw()
    assert BODY_MARKER.encode() not in raw
    assert SECRET_KEY.encode() not in raw
    assert "[parameters: hidden]" in web_report["exception"]["values"][-1]["value"]
