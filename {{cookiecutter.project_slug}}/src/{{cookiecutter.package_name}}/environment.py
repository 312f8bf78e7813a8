"""What settings groups are made of: the field of one variable, the group, the parsers."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from environs import Env, EnvValidationError
from marshmallow import ValidationError
from marshmallow.validate import Length
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from .settings import Settings

Shown = Literal["plain", "secret", "url", "level"]
Problems = dict[str, list[str]]
# Platforms hand out postgres://; SQLite is for the demo.
SUPPORTED_DATABASE_BACKENDS = ("postgres", "postgresql", "sqlite")
# From examples and tutorials: a key anyone can read signs nothing.
PLACEHOLDER_SECRETS = ("change-me", "changethis", "secret", "dev")
SECRET_RULE = Length(
    min=32,
    error="Must be at least {min} characters; generate one with "
    "python -c 'import secrets; print(secrets.token_urlsafe(48))'.",
)
REDIS_SCHEMES = ("redis", "rediss", "unix")
# kombu's SQLAlchemy transport: a run with no servers at all.
BROKER_SCHEMES = (*REDIS_SCHEMES, "sqla+sqlite", "sqla+postgresql")
# A host name, IPv4 or [IPv6] address, optionally "*." first.
HOST_PATTERN = re.compile(r"(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\])")


def variable(name: str, shown: Shown = "plain") -> Any:
    """A field read from environment variable `name`; `shown` is how `config` prints it."""
    return dataclasses.field(metadata={"variable": name, "shown": shown}, repr=shown == "plain")


class Group:
    """The settings of one concern: a frozen dataclass read from the environment by `read`."""

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        """Rules across variables, once all are read; `found` holds the problems so far."""
        problems: Problems = {}
        for value in vars(self).values():
            if isinstance(value, Group):
                problems.update(value.problems({**found, **problems}, settings))
        return problems


def add_parsers(env: Env) -> None:
    env.add_parser("database_url", _parse_database_url)
    env.add_parser("redis_url", _parse_redis_url)
    env.add_parser("broker_url", _parse_broker_url)
    env.add_parser("allowed_hosts", _parse_allowed_hosts)
    env.add_parser("http_url", _parse_http_url)
    env.add_parser("optional_port", _parse_optional_port)
    env.add_parser("optional_path", _parse_optional_path)


def problems_by_variable(error: EnvValidationError) -> Problems:
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
    if urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ValidationError(f"Not a Redis URL; the scheme must be one of: {', '.join(REDIS_SCHEMES)}.")
    return value


def _parse_broker_url(value: str) -> str | None:
    if not value:
        return None
    if urlsplit(value).scheme not in BROKER_SCHEMES:
        raise ValidationError(f"Unsupported broker; the scheme must be one of: {', '.join(BROKER_SCHEMES)}.")
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
