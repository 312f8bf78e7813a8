"""The audit behind `{{ cookiecutter.project_slug }} check`, and the first half of the release step.

Like Django's `check --deploy`, without named environments: each rule judges one setting.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .settings import ConfigurationError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine


class Severity(enum.StrEnum):
    ERROR = "error"  # exit 78
    UNAVAILABLE = "unavailable"  # exit 69
    WARNING = "warning"  # printed; never fails the release


@dataclasses.dataclass(frozen=True)
class Finding:
    severity: Severity
    variable: str
    factor: str
    message: str

    def line(self) -> str:
        return f"{self.severity.upper()} {self.variable} (factor {self.factor}): {self.message}"


@dataclasses.dataclass(frozen=True)
class Report:
    findings: list[Finding]
    schema: str

    @property
    def exit_status(self) -> int:
        severities = {finding.severity for finding in self.findings}
        if Severity.ERROR in severities:
            return os.EX_CONFIG
        if Severity.UNAVAILABLE in severities:
            return os.EX_UNAVAILABLE
        return os.EX_OK

    @property
    def status(self) -> str:
        names = {os.EX_CONFIG: "misconfigured", os.EX_UNAVAILABLE: "unavailable"}
        return names.get(self.exit_status, "sound")

    def as_text(self) -> str:
        lines = [finding.line() for finding in self.findings]
        lines.append(f"schema: {self.schema}")
        lines.append(f"check: {self.status} (exit {self.exit_status})")
        return "\n".join(lines)

    def as_json(self) -> str:
        problems = [dataclasses.asdict(finding) for finding in self.findings]
        document = {"status": self.status, "exit_status": self.exit_status, "schema": self.schema}
        return json.dumps({**document, "problems": problems})


def audit(load: Callable[[], Settings] = load_settings) -> Report:
    """Settings first, then, only if they load, the backing services."""
    try:
        settings = load()
    except ConfigurationError as error:
        return Report(findings=list(settings_problems(error)), schema="not checked (settings invalid)")
    findings = audit_settings(settings)
    # A local file is already refused above; probing it would only create it.
    schema = "not checked (a local sqlite file)"
    if settings.database.url.get_backend_name() != "sqlite":
        database_findings, schema = check_database_answers(settings)
        findings += database_findings
    if not settings.jobs.local_broker:
        findings += check_broker_answers(settings)
    return Report(findings=findings, schema=schema)


def audit_settings(settings: Settings) -> list[Finding]:
    rules = (
        check_forwarded_allow_ips,
        check_allowed_hosts,
        check_api_is_guarded,
        check_database_is_shared,
        check_broker_is_shared,
        check_release_id,
        check_log_level,
    )
    return [finding for rule in rules for finding in rule(settings)]


# --- Settings ---


def settings_problems(error: ConfigurationError) -> Iterable[Finding]:
    """Factor III: what settings.py refused at load."""
    for variable, messages in sorted(error.problems.items()):
        yield Finding(Severity.ERROR, variable, "III", " ".join(messages))


def check_forwarded_allow_ips(settings: Settings) -> Iterable[Finding]:
    """Factor VII: trusting every proxy is right only where a platform's router is the only way in."""
    trusted = {address.strip() for address in settings.web.forwarded_allow_ips.split(",")}
    if "*" in trusted and not settings.web.forwarded_allow_all:
        yield Finding(
            Severity.ERROR,
            "FORWARDED_ALLOW_IPS",
            "VII",
            "'*' lets any client forge X-Forwarded-For/-Proto; list the proxies' addresses, or set "
            "FORWARDED_ALLOW_ALL=true if a router is the only client that can reach this process.",
        )


def check_allowed_hosts(settings: Settings) -> Iterable[Finding]:
    """Factor VII: answering any Host lets a forged one into absolute URLs and caches."""
    if "*" in settings.web.allowed_hosts:
        yield Finding(
            Severity.WARNING,
            "ALLOWED_HOSTS",
            "VII",
            "'*' answers any Host header; list the names clients use (e.g. *.herokuapp.com, your domain).",
        )


def check_api_is_guarded(settings: Settings) -> Iterable[Finding]:
    """Factor IV: the identity provider is attached by URL; without one anyone may read and write."""
    if settings.auth.api_open:
        yield Finding(
            Severity.WARNING,
            "API_OPEN",
            "IV",
            "true: anyone who reaches the service may read and write items; set OIDC_ISSUER and "
            "OIDC_AUDIENCE, and unset API_OPEN, before it leaves your machine.",
        )


def check_database_is_shared(settings: Settings) -> Iterable[Finding]:
    """Factor VI: processes on other hosts cannot share a SQLite file."""
    if settings.database.url.get_backend_name() == "sqlite":
        yield Finding(
            Severity.ERROR,
            "DATABASE_URL",
            "VI",
            "a sqlite file is local to one host (fine for `make demo`); attach a PostgreSQL database by URL.",
        )


def check_broker_is_shared(settings: Settings) -> Iterable[Finding]:
    """Factor VI: a queue in a local SQLite file reaches no worker on another host."""
    if settings.jobs.local_broker:
        variable = "BROKER_URL" if settings.jobs.broker_url else "REDIS_URL"
        yield Finding(
            Severity.ERROR,
            variable,
            "VI",
            "a sqla+sqlite queue is a file on one host (fine for `make demo`); attach Redis by URL.",
        )


def check_release_id(settings: Settings) -> Iterable[Finding]:
    """Factor V: every release names the build it runs, so logs and /version say what is live."""
    if settings.release_id == "unknown":
        yield Finding(
            Severity.WARNING,
            "RELEASE_ID",
            "V",
            "unknown; build the image with --build-arg RELEASE_ID=<commit>, or on Heroku enable "
            "runtime-dyno-metadata.",
        )


def check_log_level(settings: Settings) -> Iterable[Finding]:
    """Factor XI: DEBUG floods the log stream, and may carry request data."""
    if settings.logs.level <= logging.DEBUG:
        yield Finding(
            Severity.WARNING, "LOG_LEVEL", "XI", "DEBUG logs every detail of every request; INFO is the norm."
        )


# --- Backing services ---


def check_database_answers(settings: Settings) -> tuple[list[Finding], str]:
    """Factors IV and V: the database answers within the timeout; its schema is reported, never changed."""
    from .schema import current_revisions

    engine = _probe_engine(settings)
    try:
        with engine.connect() as connection:
            current = current_revisions(connection)
    except Exception as exc:  # any failure to connect or ask is "unreachable", with its reason
        finding = Finding(Severity.UNAVAILABLE, "DATABASE_URL", "IV", f"no answer: {_reason(exc)}")
        return [finding], "unknown (database unreachable)"
    finally:
        engine.dispose()
    return _schema_findings(current)


def _probe_engine(settings: Settings) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from .database import CONNECT_TIMEOUT_SECONDS, sync_url

    url = sync_url(settings.database.url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # libpq's own bound on connecting, and the server's on each statement.
        statement_timeout = f"-c statement_timeout={CONNECT_TIMEOUT_SECONDS * 1000}"
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": statement_timeout}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _schema_findings(current: frozenset[str]) -> tuple[list[Finding], str]:
    from .schema import SchemaExpectation

    expected = SchemaExpectation.from_migrations()
    heads = ", ".join(sorted(expected.heads))
    found = ", ".join(sorted(current))
    if current == expected.heads:
        return [], f"at head {heads}"
    if not current:
        return [], f"never migrated; the release step migrates it to {heads}"
    if current <= expected.known:
        return [], f"at {found}, behind head {heads}; the release step migrates it"
    # A rollback: the old code works only if migrations expand first.
    warning = Finding(
        Severity.WARNING,
        "DATABASE_URL",
        "V",
        f"schema at {found}, which this release does not know (a newer release migrated it); "
        "roll back only if that migration was additive.",
    )
    return [warning], f"at {found}, ahead of this code's head {heads}"


def check_broker_answers(settings: Settings) -> list[Finding]:
    """Factor IV: the job broker answers within the timeout."""
    from .database import CONNECT_TIMEOUT_SECONDS
    from .jobs.celery_app import create_celery, probe_broker

    variable = "BROKER_URL" if settings.jobs.broker_url else "REDIS_URL"
    try:
        # The database's connect timeout (database.py): a backing service silent that long is down.
        probe_broker(create_celery(settings), CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # kombu raises several unrelated classes for one broken broker
        return [Finding(Severity.UNAVAILABLE, variable, "IV", f"no answer: {_reason(exc)}")]
    return []


def _reason(exc: Exception) -> str:
    """The exception's class and the first line of its message (drivers name the host, not the password)."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {first_line}" if first_line else exc.__class__.__name__
