"""Factor XII: every process, long-running or one-off, starts here, from the same code and configuration.

Commands import what they need only when run: the worker must take over SIGTERM at once.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from . import telemetry  # drop: telemetry
from .events.commands import events  # drop: events

if TYPE_CHECKING:
    from .settings import Settings

logger = logging.getLogger(__name__)


def load_or_exit() -> Settings:
    """Validated settings with logging configured, or exit naming every bad variable."""
    from .logs import configure_logging
    from .settings import ConfigurationError, load_settings

    try:
        settings = load_settings()
    except ConfigurationError as error:
        click.echo(str(error), err=True)
        # sysexits.h: a supervisor tells "misconfigured" from "crashed".
        sys.exit(os.EX_CONFIG)
    configure_logging(settings.logs.level, settings.logs.format, settings.release_id)
    telemetry.report_errors(settings)  # drop: telemetry
    return settings


def stop_cleanly_while_starting() -> None:
    """Until Celery's handler, SIGTERM is a clean exit: platforms stop processes that just started."""
    signal.signal(signal.SIGTERM, _exit_on_stop)


def _exit_on_stop(signum: int, frame: FrameType | None) -> None:
    # Without unwinding: an exception could leave a half-imported module behind.
    os._exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(context: click.Context) -> None:
    """Run one of the service's process types or admin commands."""
    # What a capability's commands call for their settings (events/commands.py).
    context.obj = load_or_exit


main.add_command(events)  # drop: events


@main.command()
@click.option("--reload", is_flag=True, help="Development only (make dev): restart on a change to the code.")
def web(reload: bool) -> None:
    """Serve HTTP on $PORT (the Procfile's `web` process)."""
    settings = load_or_exit()
    if settings.web.concurrency == 1 and not reload:
        # The app's objects live as long as this process: no collections before they are frozen (app.py).
        gc.disable()
    from .web.connections import LingeringHttpToolsProtocol
    from .web.server import ServingConfig, serve

    telemetry.serve_web_metrics(settings)  # drop: telemetry

    config = ServingConfig(
        f"{__package__}.web.app:app_from_environment",
        factory=True,
        # The router reaches the process from outside its container or dyno.
        host="0.0.0.0",  # noqa: S104  # nosec B104
        port=settings.web.port,
        workers=settings.web.concurrency,
        # Connections that end with a FIN, never a reset (web/connections.py); httptools parses.
        http=LingeringHttpToolsProtocol,
        # A refused body is read and discarded up to a few times this before the connection closes.
        max_body_bytes=settings.web.max_body_bytes,
        # Trusted only from these proxies, so url_for builds https:// links behind TLS.
        proxy_headers=True,
        forwarded_allow_ips=settings.web.forwarded_allow_ips,
        # The service's handler formats every line (logs.py).
        log_config=None,
        # The web edge writes the access line, with the request id (web/edge.py).
        access_log=False,
        # Drain after SIGTERM, within the platform's kill deadline.
        timeout_graceful_shutdown=settings.graceful_timeout,
        # Don't advertise the server software.
        server_header=False,
        # `make dev` only: a fresh server process after each change to the package's code.
        reload=reload,
        reload_dirs=[str(Path(__file__).parent)] if reload else None,
    )
    # uvicorn.run's dispatch, with a server that answers every accepted connection before it stops.
    serve(config)


@main.command()
def worker() -> None:
    """Run jobs from the queue (the Procfile's `worker` process); SIGTERM requeues what cannot finish."""
    stop_cleanly_while_starting()
    # Before billiard's first import, which reads the remapping (jobs/worker.py).
    from .settings import remap_sigterm_for_job_pool

    remap_sigterm_for_job_pool()
    settings = load_or_exit()
    from .jobs.worker import run_worker

    sys.exit(run_worker(settings))


@main.command()
def clock() -> None:
    """Enqueue periodic jobs (the Procfile's `clock` process). Run exactly one."""
    stop_cleanly_while_starting()
    settings = load_or_exit()
    from .jobs.worker import run_clock

    run_clock(settings)


@main.command()
def migrate() -> None:
    """Upgrade the database schema to the code's head (the second half of `release`)."""
    migrate_to_head(load_or_exit())


def migrate_to_head(settings: Settings) -> None:
    from .schema import head_revisions, upgrade_to_head

    upgrade_to_head(settings)
    logger.info("Database schema is at head %s", ", ".join(sorted(head_revisions())))


@main.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="text: one line per problem, for people; json: one document, for machines.",
)
def check(output_format: str) -> None:
    """Audit settings and backing services: exit 0 sound, 69 a service unavailable, 78 misconfigured."""
    from .checks import audit

    report = audit()
    click.echo(report.as_json() if output_format == "json" else report.as_text())
    sys.exit(report.exit_status)


@main.command()
def release() -> None:
    """The release step (the Procfile's `release` process): `check`, then `migrate` if nothing blocks it."""
    settings = load_or_exit()
    from .checks import Severity, audit

    # Findings as log events: stdout stays one event per line.
    report = audit(lambda: settings)
    for finding in report.findings:
        level = logging.WARNING if finding.severity == Severity.WARNING else logging.ERROR
        extra = {"variable": finding.variable, "factor": finding.factor}
        logger.log(level, finding.line(), extra=extra)
    logger.info("Schema %s", report.schema)
    if report.exit_status != os.EX_OK:
        logger.error("Release stopped before migrating: %s", report.status)
        sys.exit(report.exit_status)
    migrate_to_head(settings)


@main.command()
def config() -> None:
    """Print every setting as the process sees it, secrets masked."""
    settings = load_or_exit()
    for name, value in settings.displayed():
        click.echo(f"{name}={value}")


@main.command()
def shell() -> None:
    """An interactive Python shell with settings, an engine and a session loaded."""
    settings = load_or_exit()
    import code

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from . import models
    from .database import create_sync_database_engine

    engine = create_sync_database_engine(settings)
    with Session(engine) as session:
        namespace = {
            "settings": settings,
            "engine": engine,
            "session": session,
            "models": models,
            "select": select,
        }
        banner = f"Loaded: {', '.join(namespace)}"
        code.interact(banner=banner, local=namespace, exitmsg="")
    engine.dispose()
