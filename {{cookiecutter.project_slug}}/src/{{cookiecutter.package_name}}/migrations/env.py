"""Alembic's environment: the same settings and URL as every process, never through an ini file."""

from alembic import context
from sqlalchemy import Connection

from {{ cookiecutter.package_name }}.database import (
    create_sync_database_engine,
    sync_url,
)
from {{ cookiecutter.package_name }}.events import models as event_models  # noqa: F401  # drop: events
from {{ cookiecutter.package_name }}.logs import configure_logging
from {{ cookiecutter.package_name }}.models import Base
from {{ cookiecutter.package_name }}.settings import load_settings


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    # `{{ cookiecutter.project_slug }} migrate` hands over a connection holding the migration lock.
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    # Run as `alembic ...` from a shell (for example to autogenerate a revision).
    settings = load_settings()
    configure_logging(settings.logs.level, settings.logs.format, settings.release_id)
    if context.is_offline_mode():
        context.configure(
            url=sync_url(settings.database.url), target_metadata=Base.metadata, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_sync_database_engine(settings)
    with engine.connect() as connection:
        run_migrations(connection)
    engine.dispose()


main()
