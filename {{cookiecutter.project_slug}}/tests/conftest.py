"""Fixtures, and the small database and Redis helpers they use.

Every test talks to real PostgreSQL and Redis servers, never to mocks.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from dotenv import dotenv_values
from sqlalchemy import Connection, Engine, NullPool, create_engine, insert, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.models import (
    Item,
    ItemStatus,
)
from {{ cookiecutter.package_name }}.schema import upgrade_to_head
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    Settings,
    environment_names,
    load_settings,
)
from {{ cookiecutter.package_name }}.web.app import create_app

if TYPE_CHECKING:
    # Imported where it is used, after `pytest_configure` has registered its warning filter.
    from starlette.testclient import TestClient

# The servers are found where the service finds them: `DATABASE_URL` names a PostgreSQL server and
# `REDIS_URL` a Redis server, exported or else from the project's `.env` (exported values win, as in
# settings.py). Each session creates its own database on that server (the database the URL names need not
# exist), migrates it with the real migrations and drops it at the end, and claims a Redis database number
# of its own (emptied before and after), so several runs (or several checkouts) can share both servers.
SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL")
SERVERS = pytest.StashKey[dict[str, str]]()
DOTENV = Path(__file__).resolve().parents[1] / ".env"
# Databases are created and dropped from the maintenance database that every PostgreSQL server has.
MAINTENANCE_DATABASE = "postgres"
# Seconds to wait for a server's first answer before saying it is not there.
SERVER_CONNECT_TIMEOUT = 5
HOW_TO_GIVE_SERVERS = f"""\
These tests run against real PostgreSQL and Redis servers; they never mock or skip them. Either
  - start both on this machine's default ports, as the generated .env names them (package manager:
    postgresql and redis-server; or docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16
    and docker run -d -p 6379:6379 redis:7), or
  - name running ones, in {DOTENV} or exported (exported values win), e.g.
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 make test"""
# Databases this suite creates start with this, so a leftover from a killed run is easy to spot.
DATABASE_PREFIX = "test_{{ cookiecutter.package_name }}_"
# 48 characters, like the key the README tells people to generate (fixed, so every process shares it).
SECRET_KEY = "test-only-" + "0123456789abcdefghijklmnopqrstuvwxyzAB"
# Nothing listens on port 1: connections are refused at once, which is how an unreachable server looks.
UNREACHABLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/unreachable"
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"
# A run claims one Redis database number with `SET <prefix><n> <token> NX EX` in database 0; the expiry
# frees the number again if a run is killed before it can release it.
REDIS_CLAIM_PREFIX = "twelvefactor-test-claim:"
REDIS_CLAIM_SECONDS = 3600
REDIS_DATABASES = range(1, 16)

# A test that asks for one of these starts the service's real processes.
PROCESS_FIXTURES = frozenset({"service_env", "formation", "guarded_web"})

# The Host header of Starlette's TestClient.
TEST_CLIENT_HOST = "testserver"

# Seconds a process gets to finish its work after SIGTERM (GRACEFUL_TIMEOUT), unless a test sets another.
GRACEFUL_TIMEOUT = 5


def server_urls() -> tuple[dict[str, str], list[str]]:
    """The servers' URLs, exported or from `.env`, each with where it came from; and the names missing."""
    from_file = dotenv_values(DOTENV) if DOTENV.is_file() else {}
    urls, missing = {}, []
    for name in SERVER_VARIABLES:
        value = os.environ.get(name) or from_file.get(name)
        if value:
            urls[name] = value
        else:
            missing.append(name)
    return urls, missing


def server_problems(urls: dict[str, str]) -> list[str]:
    """Why each server does not answer, if it does not."""
    problems = []
    database = DatabaseServer(make_url(urls["DATABASE_URL"]))
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure to connect is reported the same way
        problems.append(f"PostgreSQL at {database.server_url}: {error.__class__.__name__}: {error}".strip())
    finally:
        database.engine.dispose()
    try:
        with redis.Redis.from_url(urls["REDIS_URL"], socket_connect_timeout=SERVER_CONNECT_TIMEOUT) as server:
            server.ping()
    except Exception as error:
        problems.append(f"Redis at {urls['REDIS_URL']}: {error.__class__.__name__}: {error}")
    return problems


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before collecting anything when the servers are not there: these tests never skip."""
    # Read once, before any test changes the environment.
    urls, missing = server_urls()
    problems = [f"{name} is not set" for name in missing] if missing else server_problems(urls)
    if problems:
        pytest.exit(
            "\n".join(["No servers to test against:", *(f"  {p}" for p in problems), HOW_TO_GIVE_SERVERS]),
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    session.config.stash[SERVERS] = urls


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start the service's processes first: they mostly wait, and under pytest-xdist the other
    workers fill those waits with the in-process tests instead of a long process test being left for last."""
    items.sort(key=lambda item: not starts_processes(item))


def starts_processes(item: pytest.Item) -> bool:
    return isinstance(item, pytest.Function) and not PROCESS_FIXTURES.isdisjoint(item.fixturenames)


def url_string(url: URL) -> str:
    """The URL as an environment variable holds it; `str(url)` would mask the password."""
    return url.render_as_string(hide_password=False)


class DatabaseServer:
    """Creates and drops databases on the PostgreSQL server named by the suite's DATABASE_URL."""

    def __init__(self, server_url: URL) -> None:
        self.server_url = server_url
        # CREATE and DROP DATABASE cannot run inside a transaction.
        self.engine: Engine = create_engine(
            sync_url(server_url.set(database=MAINTENANCE_DATABASE)),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"connect_timeout": SERVER_CONNECT_TIMEOUT},
        )

    def create(self) -> URL:
        # pytest-xdist's worker id ("gw0"...) tells whose database a leftover was.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        name = f"{DATABASE_PREFIX}{worker}_{secrets.token_hex(6)}"
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
        patch.setenv("API_OPEN", "true")
        for name, value in variables.items():
            patch.setenv(name, value)
        return load_settings(dotenv=None)


def redis_database_url(server_url: str, number: int) -> str:
    """The URL of database `number` on the Redis server of `server_url`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{number}"))


@pytest.fixture(scope="session")
def redis_keyspace(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a Redis database this session alone uses: claimed in database 0, emptied, released."""
    server_url = request.config.stash[SERVERS]["REDIS_URL"]
    token = secrets.token_hex(16)
    with redis.Redis.from_url(redis_database_url(server_url, 0)) as claims:
        # Prefer empty databases: one that holds keys may belong to something that never claims.
        sizes = {}
        for number in REDIS_DATABASES:
            with redis.Redis.from_url(redis_database_url(server_url, number)) as database:
                sizes[number] = database.dbsize()
        by_preference = sorted(REDIS_DATABASES, key=lambda number: (sizes[number] > 0, number))
        claimed = next(
            (
                number
                for number in by_preference
                if claims.set(f"{REDIS_CLAIM_PREFIX}{number}", token, nx=True, ex=REDIS_CLAIM_SECONDS)
            ),
            None,
        )
        if claimed is None:
            pytest.exit("every Redis database 1-15 is claimed by another test run", returncode=3)
        url = redis_database_url(server_url, claimed)
        with redis.Redis.from_url(url) as database:
            database.flushdb()
            try:
                yield url
            finally:
                database.flushdb()
                claim = f"{REDIS_CLAIM_PREFIX}{claimed}"
                if claims.get(claim) == token.encode():
                    claims.delete(claim)


@pytest.fixture
def redis_url(redis_keyspace: str) -> str:
    """This session's Redis database, emptied first: no job a previous test queued reaches this one."""
    with redis.Redis.from_url(redis_keyspace) as database:
        database.flushdb()
    return redis_keyspace


@pytest.fixture(scope="session")
def database_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    server = DatabaseServer(make_url(request.config.stash[SERVERS]["DATABASE_URL"]))
    yield server
    server.engine.dispose()


@pytest.fixture(scope="session")
def database_url(database_server: DatabaseServer, redis_keyspace: str) -> Iterator[URL]:
    """This session's database, migrated to head with the real migrations (not `create_all`)."""
    url = database_server.create()
    try:
        upgrade_to_head(settings_for(url, redis_keyspace))
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
def required(environment: pytest.MonkeyPatch, database_url: URL, redis_url: str) -> pytest.MonkeyPatch:
    """Only the variables without defaults are set."""
    environment.setenv("DATABASE_URL", url_string(database_url))
    environment.setenv("REDIS_URL", redis_url)
    environment.setenv("SECRET_KEY", SECRET_KEY)
    environment.setenv("API_OPEN", "true")
    return environment


def problems_of(error: pytest.ExceptionInfo[ConfigurationError]) -> set[str]:
    return set(error.value.problems)


@pytest.fixture
def settings(environment: pytest.MonkeyPatch, database_url: URL, redis_url: str) -> Settings:
    environment.setenv("DATABASE_URL", url_string(database_url))
    environment.setenv("REDIS_URL", redis_url)
    environment.setenv("SECRET_KEY", SECRET_KEY)
    environment.setenv("API_OPEN", "true")
    environment.setenv("LOG_FORMAT", "json")
    # The host name Starlette's TestClient sends; real processes are reached at 127.0.0.1, a default host.
    environment.setenv("ALLOWED_HOSTS", TEST_CLIENT_HOST)
    return load_settings()


@pytest.fixture
def truncate_items(database_url: URL) -> Callable[[], None]:
    def truncate() -> None:
        engine = create_engine(sync_url(database_url), poolclass=NullPool)
        try:
            with engine.begin() as connection:
                # Every table the migrations made, whichever capabilities the service keeps.
                tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
                connection.execute(text(f"TRUNCATE {', '.join(sorted(tables))} RESTART IDENTITY"))
        finally:
            engine.dispose()

    return truncate


@pytest.fixture
def engine(database_url: URL, truncate_items: Callable[[], None]) -> Iterator[Engine]:
    """A synchronous engine on the session's database, as the worker has, with an empty items table."""
    truncate_items()
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    yield engine
    engine.dispose()


def add_items(
    engine: Engine, count: int, *, status: ItemStatus = ItemStatus.PENDING, age: timedelta = timedelta(0)
) -> list[int]:
    """Insert `count` items last updated `age` ago, without enqueueing their jobs."""
    updated_at = datetime.now(UTC) - age
    rows = [{"name": f"item {number}", "status": status, "updated_at": updated_at} for number in range(count)]
    with Session(engine) as session, session.begin():
        return sorted(session.scalars(insert(Item).returning(Item.id), rows).all())


def get_item(engine: Engine, item_id: int) -> Item:
    with Session(engine) as session:
        item = session.get(Item, item_id)
        assert item is not None
        return item


def items_by_id(engine: Engine) -> dict[int, Item]:
    with Session(engine) as session:
        return {item.id: item for item in session.scalars(select(Item))}


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


@pytest.fixture
def service_env(database_url: URL, redis_url: str) -> dict[str, str]:
    return service_environment(database_url, redis_url)


def service_environment(database_url: URL, redis_url: str) -> dict[str, str]:
    """A complete environment for the service; no setting is inherited from the shell running the tests."""
    inherited = {name: value for name, value in os.environ.items() if name not in environment_names()}
    return {
        **inherited,
        "DATABASE_URL": url_string(database_url),
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "API_OPEN": "true",  # tests/test_auth.py attaches a real issuer instead
        "LOG_FORMAT": "json",
        "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    }


@contextmanager
def row_locked(engine: Engine, item_id: int) -> Iterator[Connection]:
    """Hold the item's row lock in an open transaction: its job waits in the worker until it is released.

    A job that takes as long as the test wants, with nothing in the service made slow for the test.
    """
    with engine.connect() as holder:
        holder.execute(select(Item.id).where(Item.id == item_id).with_for_update())
        yield holder
        holder.rollback()


def lock_waiters(engine: Engine) -> set[int]:
    """The server processes of this database's sessions that wait for a row lock: jobs in a worker's hands."""
    query = text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as connection:
        return set(connection.execute(query).scalars())


def job_waits_for_a_lock(engine: Engine) -> bool:
    """Whether a session of this database waits for a row lock: the job is in a pool process's hands."""
    return bool(lock_waiters(engine))
