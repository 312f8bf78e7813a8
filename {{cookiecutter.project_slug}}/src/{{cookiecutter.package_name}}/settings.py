"""Factor III: all configuration comes from the environment, validated once at start; bad values stop it.

Only this module reads the environment; the entry points (`cli.py`) pass `Settings` down.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from environs import Env, EnvValidationError
from marshmallow import ValidationError
from marshmallow.validate import Length, NoneOf, OneOf, Range
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

LogFormat = Literal["json", "console"]
# Platforms hand out postgres://; SQLite is for the demo.
SUPPORTED_DATABASE_BACKENDS = ("postgres", "postgresql", "sqlite")

# From examples and tutorials: a key anyone can read signs nothing.
PLACEHOLDER_SECRETS = ("change-me", "changethis", "secret", "dev")
SECRET_FIELDS = frozenset({"secret_key", "events_secret", "events_secret_previous", "sentry_dsn"})
URL_FIELDS = frozenset({"redis_url", "broker_url", "events_url"})
REDIS_SCHEMES = ("redis", "rediss", "unix")
# kombu's SQLAlchemy transport: a run with no servers at all.
BROKER_SCHEMES = (*REDIS_SCHEMES, "sqla+sqlite", "sqla+postgresql")
EVENTS_SCHEMES = ("http", "https")
SECRET_RULE = Length(
    min=32,
    error="Must be at least {min} characters; generate one with "
    "python -c 'import secrets; print(secrets.token_urlsafe(48))'.",
)
SERVICE_NAME = "{{ cookiecutter.project_slug }}"
TRACES_EXPORTERS = ("otlp", "console", "none")
# Every collector and vendor accepts it; gRPC would need another package.
OTLP_PROTOCOLS = ("http/protobuf",)


class ConfigurationError(Exception):
    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        lines = [f"  {name}: {' '.join(messages)}" for name, messages in sorted(problems.items())]
        super().__init__("Invalid configuration, fix these environment variables:\n" + "\n".join(lines))


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated configuration. Field `foo_bar` is environment variable `FOO_BAR`."""

    database_url: URL
    redis_url: str | None
    broker_url: str | None
    secret_key: str = dataclasses.field(repr=False)
    port: int
    web_concurrency: int
    forwarded_allow_ips: str
    forwarded_allow_all: bool
    log_level: int
    log_format: LogFormat
    db_pool_size: int
    db_max_overflow: int
    graceful_timeout: int
    worker_concurrency: int
    job_time_limit: int
    release_id: str
    allowed_hosts: tuple[str, ...]
    max_body_bytes: int
    # May carry credentials: shown only masked, by `displayed()`.
    events_url: str | None = dataclasses.field(repr=False)
    events_secret: str | None = dataclasses.field(repr=False)
    events_secret_previous: str | None = dataclasses.field(repr=False)
    events_max_attempts: int
    otel_exporter_otlp_endpoint: str | None
    otel_traces_exporter: str
    otel_exporter_otlp_protocol: str
    otel_service_name: str
    metrics_port: int | None
    prometheus_multiproc_dir: Path | None
    sentry_dsn: str | None = dataclasses.field(repr=False)
    sentry_send_request_bodies: bool

    @property
    def event_secrets(self) -> tuple[str, ...]:
        """The current secret, then the previous one during a rotation."""
        return tuple(secret for secret in (self.events_secret, self.events_secret_previous) if secret)

    @property
    def tracing(self) -> bool:
        return self.otel_traces_exporter != "none"

    @property
    def metrics(self) -> bool:
        return self.metrics_port is not None

    @property
    def job_broker_url(self) -> str:
        broker = self.broker_url or self.redis_url
        if broker is None:
            raise ConfigurationError({"REDIS_URL": ["Environment variable not set."]})
        return broker

    @property
    def embedded_broker(self) -> bool:
        """kombu's SQLAlchemy transport: the queue is a database table, with no broker server."""
        return self.job_broker_url.startswith("sqla+")

    @property
    def local_broker(self) -> bool:
        """In a SQLite file, which only this host's processes reach."""
        return self.job_broker_url.startswith("sqla+sqlite")

    def displayed(self) -> Iterator[tuple[str, str]]:
        """(VARIABLE, value) pairs safe to print: secrets and URL passwords masked."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in SECRET_FIELDS:
                shown = "" if value is None else "********"
            elif isinstance(value, URL):
                shown = value.render_as_string(hide_password=True)
            elif field.name in URL_FIELDS:
                shown = "" if value is None else mask_url_password(value)
            elif field.name == "log_level":
                shown = logging.getLevelName(value)
            elif isinstance(value, tuple):
                shown = ",".join(value)
            else:
                shown = str(value)
            yield field.name.upper(), shown


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(dotenv: Path | None = Path(".env")) -> Settings:
    """Every setting, validated; one `ConfigurationError` names all problems."""
    env = Env(eager=False)
    if dotenv is not None and dotenv.is_file():
        env.read_env(dotenv, recurse=False, override=False)

    env.add_parser("database_url", _parse_database_url)
    env.add_parser("redis_url", _parse_redis_url)
    env.add_parser("broker_url", _parse_broker_url)
    env.add_parser("events_url", _parse_events_url)
    env.add_parser("allowed_hosts", _parse_allowed_hosts)
    env.add_parser("http_url", _parse_http_url)
    env.add_parser("optional_port", _parse_optional_port)
    env.add_parser("optional_path", _parse_optional_path)

    values: dict[str, Any] = {
        # Factor IV: attached by URL, deliberately with no default.
        "database_url": env.database_url("DATABASE_URL"),
        # Heroku's Redis add-on sets it; BROKER_URL, if set, wins.
        "redis_url": env.redis_url("REDIS_URL", None),
        "broker_url": env.broker_url("BROKER_URL", None),
        # Shared by every process of one deploy; a per-process random default would break factor VI.
        "secret_key": env.str(
            "SECRET_KEY",
            validate=[SECRET_RULE, NoneOf(PLACEHOLDER_SECRETS, error="Must not be a placeholder value.")],
        ),
        # The platform's router sends traffic to $PORT (factor VII).
        "port": env.int("PORT", 8000, validate=Range(min=1, max=65535)),
        # Heroku sets it from the dyno size; scale out with processes, not workers.
        "web_concurrency": env.int("WEB_CONCURRENCY", 1, validate=Range(min=1, max=64)),
        # "*" on Heroku, whose router is the only client.
        "forwarded_allow_ips": env.str("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        # "*" lets clients forge their address unless a router is the only way in.
        "forwarded_allow_all": env.bool("FORWARDED_ALLOW_ALL", False),
        "log_level": env.log_level("LOG_LEVEL", logging.INFO),
        # json for machines; console for people at a terminal.
        "log_format": env.str("LOG_FORMAT", "json", validate=OneOf(["json", "console"])),
        # Per engine; the web has two (reads, writes), and only writes overflow.
        "db_pool_size": env.int("DB_POOL_SIZE", 10, validate=Range(min=1)),
        "db_max_overflow": env.int("DB_MAX_OVERFLOW", 10, validate=Range(min=0)),
        # Heroku and Kubernetes kill a process 30 s after SIGTERM; drain within that.
        "graceful_timeout": env.int("GRACEFUL_TIMEOUT", 20, validate=Range(min=0, max=29)),
        # Scale out with more worker processes (factor VIII).
        "worker_concurrency": env.int("WORKER_CONCURRENCY", 2, validate=Range(min=1, max=64)),
        # The broker redelivers an unfinished job only after twice this (jobs/celery_app.py).
        "job_time_limit": env.int("JOB_TIME_LIMIT", 300, validate=Range(min=1)),
        # Factor V: the image's build argument, else Heroku's release number (runtime-dyno-metadata).
        "release_id": env.str("RELEASE_ID", "") or env.str("HEROKU_RELEASE_VERSION", "") or "unknown",
        # --- Events (events/) ---
        # Unset: detached, nothing is sent.
        "events_url": env.events_url("EVENTS_URL", None),
        # Shared with the other app: signs outgoing events, verifies incoming ones.
        "events_secret": env.str("EVENTS_SECRET", "", validate=_optional(SECRET_RULE)) or None,
        # The old secret during a rotation: still accepted, never used to sign.
        "events_secret_previous": env.str("EVENTS_SECRET_PREVIOUS", "", validate=_optional(SECRET_RULE))
        or None,
        # With backoff capped at 10 minutes: about an hour before an operator steps in.
        "events_max_attempts": env.int("EVENTS_MAX_ATTEMPTS", 12, validate=Range(min=1, max=100)),
        # --- Hostile input ---
        # A forged Host never reaches links or caches. "*.example.com" matches subdomains, "*" anything.
        "allowed_hosts": env.allowed_hosts("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"),
        # Larger bodies are refused (413) unread; an item is far smaller.
        "max_body_bytes": env.int(
            "MAX_BODY_BYTES", 1024 * 1024, validate=Range(min=1024, max=100 * 1024 * 1024)
        ),
        # --- Telemetry: each part off, its libraries not even imported, until set ---
        # An OTLP endpoint alone turns traces on (a collector's base URL).
        "otel_exporter_otlp_endpoint": env.http_url("OTEL_EXPORTER_OTLP_ENDPOINT", None),
        "otel_traces_exporter": env.str("OTEL_TRACES_EXPORTER", "", validate=OneOf(["", *TRACES_EXPORTERS])),
        "otel_exporter_otlp_protocol": env.str(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", validate=OneOf(OTLP_PROTOCOLS)
        ),
        "otel_service_name": env.str("OTEL_SERVICE_NAME", SERVICE_NAME, validate=Length(min=1)),
        # Never the public port.
        "metrics_port": env.optional_port("METRICS_PORT", None),
        "prometheus_multiproc_dir": env.optional_path("PROMETHEUS_MULTIPROC_DIR", None),
        "sentry_dsn": env.http_url("SENTRY_DSN", None),
        # Request bodies may hold personal data.
        "sentry_send_request_bodies": env.bool("SENTRY_SEND_REQUEST_BODIES", False),
    }
    problems: dict[str, list[str]] = {}
    try:
        env.seal()
    except EnvValidationError as error:
        problems = _problems_by_variable(error)
    if values["redis_url"] is None and values["broker_url"] is None and "REDIS_URL" not in problems:
        problems["REDIS_URL"] = ["Environment variable not set (the job broker, unless BROKER_URL is set)."]
    if values["events_url"] and not values["events_secret"] and "EVENTS_SECRET" not in problems:
        problems["EVENTS_SECRET"] = ["Environment variable not set (it signs the events to EVENTS_URL)."]
    problems.update(_telemetry_problems(values, problems))
    if problems:
        raise ConfigurationError(problems)
    if not values["otel_traces_exporter"]:
        values["otel_traces_exporter"] = "otlp" if values["otel_exporter_otlp_endpoint"] else "none"
    return Settings(**values)


def _telemetry_problems(values: dict[str, Any], problems: dict[str, list[str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if values["otel_traces_exporter"] == "otlp" and not values["otel_exporter_otlp_endpoint"]:
        found["OTEL_EXPORTER_OTLP_ENDPOINT"] = ["Must be set when OTEL_TRACES_EXPORTER is otlp."]
    if values["metrics_port"] is not None and "METRICS_PORT" not in problems:
        if values["prometheus_multiproc_dir"] is None:
            found["PROMETHEUS_MULTIPROC_DIR"] = [
                "Must be set with METRICS_PORT: a writable directory where every process of this type "
                "records its metrics."
            ]
        if values["metrics_port"] == values["port"]:
            found["METRICS_PORT"] = ["Must differ from PORT: metrics never share the public port."]
    return found


def _problems_by_variable(error: EnvValidationError) -> dict[str, list[str]]:
    messages = error.error_messages
    if not isinstance(messages, Mapping):
        return {"environment": [str(message) for message in messages]}
    return {str(name): [str(message) for message in problems] for name, problems in messages.items()}


def _parse_database_url(value: str) -> URL:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValidationError("Not a valid database URL.") from None
    if url.get_backend_name() not in SUPPORTED_DATABASE_BACKENDS:
        supported = ", ".join(SUPPORTED_DATABASE_BACKENDS)
        raise ValidationError(f"Unsupported database '{url.get_backend_name()}'; use one of: {supported}.")
    return url


def _parse_redis_url(value: str) -> str | None:
    if not value:
        return None  # `REDIS_URL=` in a .env file means unset
    scheme = urlsplit(value).scheme
    if scheme not in REDIS_SCHEMES:
        raise ValidationError(f"Not a Redis URL; the scheme must be one of: {', '.join(REDIS_SCHEMES)}.")
    return value


def _parse_http_url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Not an http:// or https:// URL.")
    return value


def _parse_optional_port(value: str) -> int | None:
    if not value:
        return None  # `METRICS_PORT=` means unset, as in .env.example
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValidationError("Must be a port number, 1 to 65535.")
    return int(value)


def _parse_optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _parse_broker_url(value: str) -> str | None:
    if not value:
        return None
    scheme = urlsplit(value).scheme
    if scheme not in BROKER_SCHEMES:
        raise ValidationError(f"Unsupported broker; the scheme must be one of: {', '.join(BROKER_SCHEMES)}.")
    return value


def _parse_events_url(value: str) -> str | None:
    if not value:
        return None  # `EVENTS_URL=` means detached, like unset
    parts = urlsplit(value)
    if parts.scheme not in EVENTS_SCHEMES or not parts.hostname:
        raise ValidationError(f"Not an absolute URL; the scheme must be one of: {', '.join(EVENTS_SCHEMES)}.")
    return value


def _optional(rule: Length) -> Callable[[str], None]:
    """`rule`, for a variable that may also be empty (unset)."""

    def check(value: str) -> None:
        if value:
            rule(value)

    return check


# A host name, IPv4 or [IPv6] address, optionally "*." first.
HOST_PATTERN = re.compile(r"(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\])")


def _parse_allowed_hosts(value: str) -> tuple[str, ...]:
    hosts = tuple(host.strip().lower() for host in value.split(",") if host.strip())
    if not hosts:
        raise ValidationError('Must name at least one host (or "*" for any).')
    if "*" in hosts:
        return ("*",)
    bad = [host for host in hosts if not HOST_PATTERN.fullmatch(host)]
    if bad:
        raise ValidationError(
            f"Not a host name: {', '.join(bad)} (no scheme, port or path; '*.' only as a prefix)."
        )
    return hosts


def environment_names() -> list[str]:
    return [field.name.upper() for field in dataclasses.fields(Settings)]


def remap_sigterm_for_job_pool() -> None:
    """Pool children ignore SIGTERM (jobs/worker.py); billiard reads this when imported."""
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
