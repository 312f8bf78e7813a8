"""Off means off: with no telemetry variable set, no telemetry library is even imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.settings import ConfigurationError, load_settings

from conftest import problems_of
from processes import modules_loaded_by

# Everything turned on by OTEL_*, METRICS_PORT or SENTRY_DSN, and the service's modules that wire it.
# (Not the OpenTelemetry API as such: redis-py imports it, and its metrics SDK, by itself whenever they are
# installed, to offer its own optional metrics; it records nothing unless configured.)
TELEMETRY_MODULES = (
    "opentelemetry.sdk.trace",  # drop: tracing
    "opentelemetry.exporter",  # drop: tracing
    "opentelemetry.instrumentation",  # drop: tracing
    "prometheus_client",  # drop: metrics
    "sentry_sdk",  # drop: error-reports
)
SERVICE_TELEMETRY_MODULES = (
    "tracing",  # drop: tracing
    "metrics",  # drop: metrics
    "error_reports",  # drop: error-reports
)

# A web process's life (settings, app, lifespan, one POST) and a worker's start-up wiring, in one real
# process, which then prints the modules it has loaded.
PROGRAM = """
import json, sys
from starlette.testclient import TestClient
from {{ cookiecutter.package_name }}.settings import load_settings
from {{ cookiecutter.package_name }}.web.app import app_from_environment
from {{ cookiecutter.package_name }}.database import create_sync_database_engine
from {{ cookiecutter.package_name }}.jobs.celery_app import create_celery
from {{ cookiecutter.package_name }}.jobs.worker import register_jobs
from {{ cookiecutter.package_name }}.telemetry import start_worker
with TestClient(app_from_environment(), base_url="http://localhost") as client:
    assert client.post("/items", json={"name": "untraced"}).status_code == 201
settings = load_settings()
engine = create_sync_database_engine(settings)
app = create_celery(settings)
register_jobs(app, engine)
start_worker(settings, app, engine)
print(json.dumps(sorted(sys.modules)))
"""


def test_with_no_telemetry_variables_no_telemetry_module_is_imported(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    loaded = modules_loaded_by(PROGRAM, service_env, tmp_path)

    assert "starlette" in loaded  # the program did run the app
    assert [name for name in loaded if name.startswith(TELEMETRY_MODULES)] == []
    package = "{{ cookiecutter.package_name }}."
    service_modules = {name.rpartition(".")[2] for name in loaded if name.startswith(package)}
    assert service_modules.isdisjoint(SERVICE_TELEMETRY_MODULES)


def test_telemetry_is_off_unless_its_variables_say_so(required: pytest.MonkeyPatch) -> None:
    telemetry = load_settings().telemetry

    assert not telemetry.tracing.on  # drop: tracing
    assert not telemetry.metrics.on  # drop: metrics
    assert not telemetry.error_reports.on  # drop: error-reports


def test_telemetry_variables_that_cannot_work_are_all_named_at_start(required: pytest.MonkeyPatch) -> None:
    required.setenv("OTEL_TRACES_EXPORTER", "otlp")  # drop: tracing
    required.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # drop: tracing
    required.setenv("PORT", "9100")  # drop: metrics
    required.setenv("METRICS_PORT", "9100")  # drop: metrics
    required.setenv("SENTRY_DSN", "not a url")  # drop: error-reports

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {
        "OTEL_EXPORTER_OTLP_ENDPOINT",  # drop: tracing
        "OTEL_EXPORTER_OTLP_PROTOCOL",  # drop: tracing
        "METRICS_PORT",  # drop: metrics
        "PROMETHEUS_MULTIPROC_DIR",  # drop: metrics
        "SENTRY_DSN",  # drop: error-reports
    }
