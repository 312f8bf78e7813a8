"""The `events` commands: the outgoing events' state, the failed ones sent again, a fresh secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..settings import Settings


@click.group()
def events() -> None:
    """Events to and from other apps: see their state, re-drive the failed ones, make a secret."""


@events.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "delivered", "failed"]),
    help="Only events in this state.",
)
@click.pass_obj
def list_events(load_settings: Callable[[], Settings], status: str | None) -> None:
    """One line per event: id, type, status, attempts, last HTTP status or error, created."""
    settings = load_settings()
    from sqlalchemy.orm import Session

    from ..database import create_sync_database_engine
    from . import outgoing
    from .models import DeliveryStatus

    engine = create_sync_database_engine(settings)
    with Session(engine) as session:
        for event in outgoing.listed(session, DeliveryStatus(status) if status else None):
            last = event.last_status if event.last_status is not None else (event.last_error or "-")
            created = event.created_at.isoformat()
            click.echo(f"{event.id}\t{event.type}\t{event.status.value}\t{event.attempts}\t{last}\t{created}")
    engine.dispose()


@events.command()
@click.argument("event_ids", nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed event.")
@click.pass_obj
def redrive(load_settings: Callable[[], Settings], event_ids: tuple[str, ...], all_failed: bool) -> None:
    """Deliver events again, with a fresh set of attempts (the clock's relay sends them within seconds)."""
    if bool(event_ids) == all_failed:
        raise click.UsageError("Name the events to re-drive, or pass --failed (not both).")
    settings = load_settings()
    from sqlalchemy.orm import Session

    from ..database import create_sync_database_engine
    from . import outgoing

    engine = create_sync_database_engine(settings)
    with Session(engine) as session, session.begin():
        redriven = outgoing.redrive(session, None if all_failed else list(event_ids))
    engine.dispose()
    for event_id in redriven:
        click.echo(f"{event_id}\tre-driven")
    missing = sorted(set(event_ids) - set(redriven))
    if missing:
        # Fail, so a script notices.
        raise click.ClickException(f"Not re-driven (unknown or delivered): {', '.join(missing)}")


@events.command()
def secret() -> None:
    """Print a fresh whsec_ secret for EVENTS_SECRET: the same value goes to both apps."""
    from .signing import new_secret

    click.echo(new_secret())
