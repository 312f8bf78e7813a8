"""Factor III: all configuration comes from the environment, validated once at start; bad values stop it.

One group per concern; the entry points (`cli.py`) pass `Settings` down.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Self, cast, get_type_hints
from urllib.parse import urlsplit, urlunsplit

from environs import Env, EnvValidationError
from marshmallow.validate import NoneOf, OneOf, Range
from sqlalchemy.engine import URL

from .environment import (
    PLACEHOLDER_SECRETS,
    SECRET_RULE,
    Group,
    Problems,
    Shown,
    add_parsers,
    problems_by_variable,
    variable,
)
from .events.settings import EventSettings  # drop: events
from .telemetry.settings import TelemetrySettings  # drop: telemetry

LogFormat = Literal["json", "console"]


class ConfigurationError(Exception):
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        lines = [f"  {name}: {' '.join(messages)}" for name, messages in sorted(problems.items())]
        super().__init__("Invalid configuration, fix these environment variables:\n" + "\n".join(lines))


@dataclasses.dataclass(frozen=True)
class LogSettings(Group):
    level: int = variable("LOG_LEVEL", "level")
    # json for machines; console for people. Unset: console only when stdout is a terminal.
    format: LogFormat = variable("LOG_FORMAT")

    @classmethod
    def read(cls, env: Env) -> Self:
        chosen = env.str("LOG_FORMAT", "", validate=OneOf(["", "json", "console"]))
        return cls(
            level=env.log_level("LOG_LEVEL", logging.INFO),
            format=cast("LogFormat", chosen or ("console" if sys.stdout.isatty() else "json")),
        )


@dataclasses.dataclass(frozen=True)
class DatabaseSettings(Group):
    # Factor IV: attached by URL, deliberately with no default.
    url: URL = variable("DATABASE_URL", "url")
    # Per engine; the web has two (reads, writes), and only writes overflow.
    pool_size: int = variable("DB_POOL_SIZE")
    max_overflow: int = variable("DB_MAX_OVERFLOW")

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            url=env.database_url("DATABASE_URL"),
            pool_size=env.int("DB_POOL_SIZE", 10, validate=Range(min=1)),
            max_overflow=env.int("DB_MAX_OVERFLOW", 10, validate=Range(min=0)),
        )


@dataclasses.dataclass(frozen=True)
class WebSettings(Group):
    # The platform's router sends traffic to $PORT (factor VII).
    port: int = variable("PORT")
    # Heroku sets it from the dyno size; scale out with processes, not workers.
    concurrency: int = variable("WEB_CONCURRENCY")
    # "*" on Heroku, whose router is the only client.
    forwarded_allow_ips: str = variable("FORWARDED_ALLOW_IPS")
    # "*" lets clients forge their address unless a router is the only way in.
    forwarded_allow_all: bool = variable("FORWARDED_ALLOW_ALL")
    # A forged Host never reaches links or caches. "*.example.com" matches subdomains, "*" anything.
    allowed_hosts: tuple[str, ...] = variable("ALLOWED_HOSTS")
    # Larger bodies are refused (413) unread; an item is far smaller.
    max_body_bytes: int = variable("MAX_BODY_BYTES")

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            port=env.int("PORT", 8000, validate=Range(min=1, max=65535)),
            concurrency=env.int("WEB_CONCURRENCY", 1, validate=Range(min=1, max=64)),
            forwarded_allow_ips=env.str("FORWARDED_ALLOW_IPS", "127.0.0.1"),
            forwarded_allow_all=env.bool("FORWARDED_ALLOW_ALL", False),
            allowed_hosts=env.allowed_hosts("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"),
            max_body_bytes=env.int(
                "MAX_BODY_BYTES", 1024 * 1024, validate=Range(min=1024, max=100 * 1024 * 1024)
            ),
        )


@dataclasses.dataclass(frozen=True)
class JobSettings(Group):
    # Heroku's Redis add-on sets it; BROKER_URL, if set, wins.
    redis_url: str | None = variable("REDIS_URL", "url")
    broker_url: str | None = variable("BROKER_URL", "url")
    # Scale out with more worker processes (factor VIII).
    concurrency: int = variable("WORKER_CONCURRENCY")
    # The broker redelivers an unfinished job only after twice this (jobs/celery_app.py).
    time_limit: int = variable("JOB_TIME_LIMIT")

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            redis_url=env.redis_url("REDIS_URL", None),
            broker_url=env.broker_url("BROKER_URL", None),
            concurrency=env.int("WORKER_CONCURRENCY", 2, validate=Range(min=1, max=64)),
            time_limit=env.int("JOB_TIME_LIMIT", 300, validate=Range(min=1)),
        )

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        if self.redis_url is None and self.broker_url is None and "REDIS_URL" not in found:
            return {"REDIS_URL": ["Environment variable not set (the job broker, unless BROKER_URL is set)."]}
        return {}

    @property
    def broker(self) -> str:
        broker = self.broker_url or self.redis_url
        if broker is None:
            raise ConfigurationError({"REDIS_URL": ["Environment variable not set."]})
        return broker

    @property
    def embedded_broker(self) -> bool:
        """kombu's SQLAlchemy transport: the queue is a database table, with no broker server."""
        return self.broker.startswith("sqla+")

    @property
    def local_broker(self) -> bool:
        """In a SQLite file, which only this host's processes reach."""
        return self.broker.startswith("sqla+sqlite")


@dataclasses.dataclass(frozen=True)
class AuthSettings(Group):
    # Factor IV: the identity provider is attached by URL; the service only verifies what it issues.
    issuer: str | None = variable("OIDC_ISSUER", "url")
    # The `aud` the issuer puts in tokens meant for this service.
    audience: str | None = variable("OIDC_AUDIENCE")
    # No issuer and no token checks: only ever by this explicit choice, for local work.
    api_open: bool = variable("API_OPEN")

    @classmethod
    def read(cls, env: Env) -> Self:
        return cls(
            issuer=env.http_url("OIDC_ISSUER", None),
            audience=env.str("OIDC_AUDIENCE", "") or None,
            api_open=env.bool("API_OPEN", False),
        )

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        if "OIDC_ISSUER" in found or "API_OPEN" in found:
            return {}
        if self.issuer is None and not self.api_open:
            return {
                "OIDC_ISSUER": [
                    "Environment variable not set (the identity provider's URL; "
                    "API_OPEN=true runs the API without authentication, for local work only)."
                ]
            }
        if self.issuer is not None and self.api_open:
            return {"API_OPEN": ["Must not be true while OIDC_ISSUER is set: choose one."]}
        if self.issuer is not None and self.audience is None:
            return {"OIDC_AUDIENCE": ["Environment variable not set (required with OIDC_ISSUER)."]}
        return {}


@dataclasses.dataclass(frozen=True)
class Settings(Group):
    """The validated configuration: one group per concern, then a few settings of every process."""

    logs: LogSettings
    database: DatabaseSettings
    web: WebSettings
    jobs: JobSettings
    auth: AuthSettings
    events: EventSettings  # drop: events
    telemetry: TelemetrySettings  # drop: telemetry
    # Factor V: the image's build argument, else Heroku's release number (runtime-dyno-metadata).
    release_id: str = variable("RELEASE_ID")
    # Shared by every process of one deploy; a per-process random default would break factor VI.
    secret_key: str = variable("SECRET_KEY", "secret")
    # Heroku and Kubernetes kill a process 30 s after SIGTERM; drain within that.
    graceful_timeout: int = variable("GRACEFUL_TIMEOUT")

    def displayed(self) -> Iterator[tuple[str, str]]:
        """(VARIABLE, value) pairs safe to print: secrets and URL passwords masked."""
        for owner, field in _variables(self):
            yield field.metadata["variable"], _shown(getattr(owner, field.name), field.metadata["shown"])


def _variables(group: Group) -> Iterator[tuple[Group, dataclasses.Field[Any]]]:
    for field in dataclasses.fields(group):  # type: ignore[arg-type]
        value = getattr(group, field.name)
        if isinstance(value, Group):
            yield from _variables(value)
        else:
            yield group, field


def _shown(value: Any, shown: Shown) -> str:
    if shown == "secret":
        return "" if value is None else "********"
    if isinstance(value, URL):
        return value.render_as_string(hide_password=True)
    if shown == "url":
        return "" if value is None else mask_url_password(value)
    if shown == "level":
        return str(logging.getLevelName(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


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
    add_parsers(env)

    settings = Settings(
        release_id=env.str("RELEASE_ID", "") or env.str("HEROKU_RELEASE_VERSION", "") or "unknown",
        secret_key=env.str(
            "SECRET_KEY",
            validate=[SECRET_RULE, NoneOf(PLACEHOLDER_SECRETS, error="Must not be a placeholder value.")],
        ),
        graceful_timeout=env.int("GRACEFUL_TIMEOUT", 20, validate=Range(min=0, max=29)),
        logs=LogSettings.read(env),
        database=DatabaseSettings.read(env),
        web=WebSettings.read(env),
        jobs=JobSettings.read(env),
        auth=AuthSettings.read(env),
        events=EventSettings.read(env),  # drop: events
        telemetry=TelemetrySettings.read(env),  # drop: telemetry
    )
    # Failed reads left None behind: the rules across variables skip what is already named.
    problems: Problems = {}
    try:
        env.seal()
    except EnvValidationError as error:
        problems = problems_by_variable(error)
    problems.update(settings.problems(problems, settings))
    if problems:
        raise ConfigurationError(problems)
    return settings


def environment_names(group: type[Group] = Settings) -> list[str]:
    """Every variable the settings read, in the order of their fields."""
    names = []
    types = get_type_hints(group)
    for field in dataclasses.fields(group):  # type: ignore[arg-type]
        if "variable" in field.metadata:
            names.append(field.metadata["variable"])
        else:
            names.extend(environment_names(types[field.name]))
    return names


def remap_sigterm_for_job_pool() -> None:
    """Pool children ignore SIGTERM (jobs/worker.py); billiard reads this when imported."""
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
