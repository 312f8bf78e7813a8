"""Telemetry's settings: each part is off, its libraries not even imported, until its variables are set."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Self

from environs import Env
from marshmallow.validate import Length, OneOf

from ..environment import Group, Problems, variable

if TYPE_CHECKING:
    from ..settings import Settings


@dataclasses.dataclass(frozen=True)  # drop: tracing
class TracingSettings(Group):  # drop: tracing
    SERVICE_NAME = "{{ cookiecutter.project_slug }}"
    EXPORTERS = ("otlp", "console", "none")
    # Every collector and vendor accepts it; gRPC would need another package.
    OTLP_PROTOCOLS = ("http/protobuf",)

    # An OTLP endpoint alone turns traces on (a collector's base URL).
    otlp_endpoint: str | None = variable("OTEL_EXPORTER_OTLP_ENDPOINT")
    exporter: str = variable("OTEL_TRACES_EXPORTER")
    otlp_protocol: str = variable("OTEL_EXPORTER_OTLP_PROTOCOL")
    service_name: str = variable("OTEL_SERVICE_NAME")

    @classmethod
    def read(cls, env: Env) -> Self:
        endpoint = env.http_url("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        exporter = env.str("OTEL_TRACES_EXPORTER", "", validate=OneOf(["", *cls.EXPORTERS]))
        return cls(
            otlp_endpoint=endpoint,
            exporter=exporter or ("otlp" if endpoint else "none"),
            otlp_protocol=env.str(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", validate=OneOf(cls.OTLP_PROTOCOLS)
            ),
            service_name=env.str("OTEL_SERVICE_NAME", cls.SERVICE_NAME, validate=Length(min=1)),
        )

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        if self.exporter == "otlp" and not self.otlp_endpoint and "OTEL_EXPORTER_OTLP_ENDPOINT" not in found:
            return {"OTEL_EXPORTER_OTLP_ENDPOINT": ["Must be set when OTEL_TRACES_EXPORTER is otlp."]}
        return {}

    @property
    def on(self) -> bool:
        return self.exporter != "none"


@dataclasses.dataclass(frozen=True)  # drop: metrics
class MetricsSettings(Group):  # drop: metrics
    # Never the public port.
    port: int | None = variable("METRICS_PORT")
    multiprocess_dir: Path | None = variable("PROMETHEUS_MULTIPROC_DIR")

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            port=env.optional_port("METRICS_PORT", None),
            multiprocess_dir=env.optional_path("PROMETHEUS_MULTIPROC_DIR", None),
        )

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        if self.port is None or "METRICS_PORT" in found:
            return {}
        problems: Problems = {}
        if self.multiprocess_dir is None:
            problems["PROMETHEUS_MULTIPROC_DIR"] = [
                "Must be set with METRICS_PORT: a writable directory where every process of this type "
                "records its metrics."
            ]
        if self.port == settings.web.port:
            problems["METRICS_PORT"] = ["Must differ from PORT: metrics never share the public port."]
        return problems

    @property
    def on(self) -> bool:
        return self.port is not None


@dataclasses.dataclass(frozen=True)  # drop: error-reports
class ErrorReportSettings(Group):  # drop: error-reports
    dsn: str | None = variable("SENTRY_DSN", "secret")
    # Request bodies may hold personal data.
    send_request_bodies: bool = variable("SENTRY_SEND_REQUEST_BODIES")

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            dsn=env.http_url("SENTRY_DSN", None),
            send_request_bodies=env.bool("SENTRY_SEND_REQUEST_BODIES", False),
        )

    @property
    def on(self) -> bool:
        return self.dsn is not None


@dataclasses.dataclass(frozen=True)
class TelemetrySettings(Group):
    tracing: TracingSettings  # drop: tracing
    metrics: MetricsSettings  # drop: metrics
    error_reports: ErrorReportSettings  # drop: error-reports

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            tracing=TracingSettings.read(env),  # drop: tracing
            metrics=MetricsSettings.read(env),  # drop: metrics
            error_reports=ErrorReportSettings.read(env),  # drop: error-reports
        )
