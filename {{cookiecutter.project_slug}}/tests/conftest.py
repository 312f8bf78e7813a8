"""Shared fixtures. Every test talks to real PostgreSQL and Redis servers, never to mocks.

The servers come from the environment the suite runs in: `DATABASE_URL` names a PostgreSQL server (any
database on it, such as the `postgres` maintenance database) and `REDIS_URL` a Redis server. Each session
creates its own database on that server, migrates it with the real migrations and drops it at the end, so
several runs (or several checkouts) can share one server.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, NullPool, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url

from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.schema import upgrade_to_head
from {{ cookiecutter.package_name }}.settings import (
    Settings,
    environment_names,
    load_settings,
)
from {{ cookiecutter.package_name }}.web.app import create_app

if TYPE_CHECKING:
    # Imported where it is used, after `pytest_configure` has registered its warning filter.
    from starlette.testclient import TestClient

SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL")
SERVERS = pytest.StashKey[dict[str, str]]()
# Databases this suite creates start with this, so a leftover from a killed run is easy to spot.
DATABASE_PREFIX = "test_{{ cookiecutter.package_name }}_"
# 48 characters, like the key the README tells people to generate (fixed, so every process shares it).
SECRET_KEY = "test-only-" + "0123456789abcdefghijklmnopqrstuvwxyzAB"
# Nothing listens on port 1: connections are refused at once, which is how an unreachable database looks.
UNREACHABLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/unreachable"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before collecting anything when the servers are not given: these tests never skip."""
    missing = [name for name in SERVER_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.exit(
            f"{' and '.join(missing)} must name real servers (these tests never mock or skip them), e.g.\n"
            "  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    # Read once, before any test changes the environment.
    session.config.stash[SERVERS] = {name: os.environ[name] for name in SERVER_VARIABLES}


def url_string(url: URL) -> str:
    """The URL as an environment variable holds it; `str(url)` would mask the password."""
    return url.render_as_string(hide_password=False)


class DatabaseServer:
    """Creates and drops databases on the PostgreSQL server named by the suite's DATABASE_URL."""

    def __init__(self, server_url: URL) -> None:
        self.server_url = server_url
        # CREATE and DROP DATABASE cannot run inside a transaction.
        self.engine: Engine = create_engine(
            sync_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )

    def create(self) -> URL:
        name = DATABASE_PREFIX + secrets.token_hex(6)
        with self.engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return self.server_url.set(database=name)

    def drop(self, url: URL) -> None:
        # FORCE ends connections a failed test may have left open.
        with self.engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))


def schema_of(database_url: URL) -> tuple[set[str], set[str]]:
    """(revisions in alembic_version, table names) of a database."""
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = text("SELECT version_num FROM alembic_version")
            return {row[0] for row in connection.execute(query)}, set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def settings_for(database_url: URL, redis_url: str, **variables: str) -> Settings:
    """Settings loaded the real way, from the environment, for a database other than the default one."""
    with pytest.MonkeyPatch.context() as patch:
        for name in environment_names():
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", url_string(database_url))
        patch.setenv("REDIS_URL", redis_url)
        patch.setenv("SECRET_KEY", SECRET_KEY)
        for name, value in variables.items():
            patch.setenv(name, value)
        return load_settings(dotenv=None)


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    return request.config.stash[SERVERS]["REDIS_URL"]


@pytest.fixture(scope="session")
def database_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    server = DatabaseServer(make_url(request.config.stash[SERVERS]["DATABASE_URL"]))
    yield server
    server.engine.dispose()


@pytest.fixture(scope="session")
def database_url(database_server: DatabaseServer, redis_url: str) -> Iterator[URL]:
    """This session's database, migrated to head with the real migrations (not `create_all`)."""
    url = database_server.create()
    try:
        upgrade_to_head(settings_for(url, redis_url))
        yield url
    finally:
        database_server.drop(url)


@pytest.fixture
def empty_database_url(database_server: DatabaseServer) -> Iterator[URL]:
    """A second database with nothing in it, not even `alembic_version`; dropped after the test."""
    url = database_server.create()
    try:
        yield url
    finally:
        database_server.drop(url)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting inherited from the shell running the tests, and a working directory without a `.env`."""
    for name in environment_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def settings(environment: pytest.MonkeyPatch, database_url: URL, redis_url: str) -> Settings:
    environment.setenv("DATABASE_URL", url_string(database_url))
    environment.setenv("REDIS_URL", redis_url)
    environment.setenv("SECRET_KEY", SECRET_KEY)
    environment.setenv("LOG_FORMAT", "json")
    return load_settings()


@pytest.fixture
def truncate_items(database_url: URL) -> Callable[[], None]:
    def truncate() -> None:
        engine = create_engine(sync_url(database_url), poolclass=NullPool)
        try:
            with engine.begin() as connection:
                connection.execute(text("TRUNCATE items RESTART IDENTITY"))
        finally:
            engine.dispose()

    return truncate


@pytest.fixture
def client(settings: Settings, truncate_items: Callable[[], None]) -> Iterator[TestClient]:
    """The app in process, lifespan included, on the session's database with an empty items table."""
    from starlette.testclient import TestClient

    truncate_items()
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo `configure_logging()` (called by the CLI and some tests), which replaces the root handlers."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in names}
    root_handlers, root_level = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    root.handlers[:] = root_handlers
    root.setLevel(root_level)
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
