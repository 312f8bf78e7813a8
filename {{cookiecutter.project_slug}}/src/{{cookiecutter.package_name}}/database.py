"""Factor IV: the database is an attached resource, located by one URL.

Platforms hand out `postgres://` URLs; SQLAlchemy wants a driver in the scheme, async or sync.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import Engine, Select, create_engine
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from .settings import Settings

# Faster than psycopg's async mode on the web path (bench/PROFILE.md).
ASYNC_POSTGRES_DRIVER = "asyncpg"
# Maintained and typed; sync work needs nothing faster.
SYNC_POSTGRES_DRIVER = "psycopg"
ASYNC_CAPABLE_POSTGRES_DRIVERS = frozenset({"asyncpg", "psycopg", "psycopg_async"})
SYNC_CAPABLE_POSTGRES_DRIVERS = frozenset({"psycopg", "psycopg2", "pg8000"})

# Down, not slow: fail with 503 instead of hanging (asyncpg waits 60 s by default, libpq forever).
CONNECT_TIMEOUT_SECONDS = 5
# A stalled server answers 503 before the router gives up (30 s on Heroku).
WEB_STATEMENT_TIMEOUT_SECONDS = 10
# A request waiting longer for a connection fails (503) instead of queueing on.
POOL_TIMEOUT_SECONDS = 5
# A bound, should a caller build a statement per request.
COMPILED_READS = 64
# A lost, restarting or stalled server, as asyncpg says it: a 503.
DRIVER_OUTAGES = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # The protocol's state, when the server ended the connection mid-read.
    asyncpg.InternalClientError,
    # Shutdown, restart, cancelled statement.
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
    TimeoutError,
)


def sync_url(url: URL) -> URL:
    backend, driver = url.get_backend_name(), _explicit_driver(url)
    if backend == "sqlite":
        return url.set(drivername="sqlite+pysqlite") if driver in (None, "aiosqlite") else url
    if driver in SYNC_CAPABLE_POSTGRES_DRIVERS:
        return url.set(drivername=f"postgresql+{driver}")
    return url.set(drivername=f"postgresql+{SYNC_POSTGRES_DRIVER}")


def async_url(url: URL) -> URL:
    backend, driver = url.get_backend_name(), _explicit_driver(url)
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    chosen = driver if driver in ASYNC_CAPABLE_POSTGRES_DRIVERS else ASYNC_POSTGRES_DRIVER
    normalised = url.set(drivername=f"postgresql+{chosen}")
    if chosen == "asyncpg" and "sslmode" in url.query:
        # asyncpg.connect() rejects libpq's `sslmode` but takes the same values as `ssl`.
        query = dict(url.query)
        query["ssl"] = query.pop("sslmode")
        normalised = normalised.set(query=query)
    return normalised


def _explicit_driver(url: URL) -> str | None:
    """The driver named in the URL's scheme (`postgresql+psycopg2` -> `psycopg2`), if any."""
    _, _, driver = url.drivername.partition("+")
    return driver or None


def create_async_database_engine(settings: Settings) -> AsyncEngine:
    """The web process's engine for writes."""
    url = async_url(settings.database.url)
    if url.get_backend_name() == "sqlite":
        return create_async_engine(url)
    return create_async_engine(
        url,
        # A pool smaller than the requests served at once queues them.
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.max_overflow,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # Before proxies' and load balancers' idle timeouts (often 30-60 min).
        pool_recycle=1800,
        # No pool_pre_ping, a round trip per request: a dropped connection fails one request, then reconnects.
        connect_args=async_connect_timeouts(url),
    )


# Wraps each read, given its SQL: how tracing sees reads off SQLAlchemy's events.
StatementObserver = Callable[[str], AbstractContextManager[object]]
UNOBSERVED = nullcontext()


def unobserved(sql: str) -> AbstractContextManager[object]:
    return UNOBSERVED


class Reads:
    """The web's one-statement reads: AUTOCOMMIT (no BEGIN, no ROLLBACK), read-only, in turns.

    SQLAlchemy's async pool lets late arrivals jump the queue (bench/PROFILE.md).
    """

    def __init__(self, settings: Settings) -> None:
        url = async_url(settings.database.url)
        # With requests taking turns, an overflow connection would never be used.
        size = settings.database.pool_size
        self.turns = asyncio.Semaphore(size)
        self.on_asyncpg = _explicit_driver(url) == ASYNC_POSTGRES_DRIVER
        # Statements are built once, at import: a handful, compiled on first use.
        self.compiled_reads: dict[Select[Any], CompiledRead] = {}
        self.observe: StatementObserver = unobserved
        if url.get_backend_name() == "sqlite":
            self.engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
            return
        self.engine = create_async_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_size=size,
            max_overflow=0,
            # As for writes.
            pool_recycle=1800,
            connect_args={**async_connect_timeouts(url), **read_only_sessions(url)},
        )

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        if self.turns.locked():
            # A 503, as for writes; only a request that must wait pays for the timer.
            async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                await self.turns.acquire()
        else:
            await self.turns.acquire()
        try:
            async with self.engine.connect() as connection:
                yield connection
        finally:
            self.turns.release()

    async def first(self, statement: Select[Any], **params: Any) -> Mapping[str, Any] | None:
        rows = await self.fetch(statement, params, limit_one=True)
        return rows[0] if rows else None

    async def all(self, statement: Select[Any], **params: Any) -> Sequence[Mapping[str, Any]]:
        return await self.fetch(statement, params, limit_one=False)

    async def fetch(
        self, statement: Select[Any], params: dict[str, Any], *, limit_one: bool
    ) -> Sequence[Mapping[str, Any]]:
        """On asyncpg, the compiled SQL runs on the pooled driver connection (bench/PROFILE.md); SQLAlchemy
        executes it on other drivers and while something listens to its statement events."""
        compiled = self.compiled(statement)
        async with self.connect() as connection:
            with self.observe(compiled.sql):
                if not self.on_asyncpg or self.engine.sync_engine.dispatch.before_cursor_execute:
                    result = (await connection.execute(statement, params)).mappings()
                    return [dict(row) for row in (result.fetchmany(1) if limit_one else result.all())]
                return await self.fetch_on_driver(connection, compiled, params, limit_one=limit_one)

    @staticmethod
    async def fetch_on_driver(
        connection: AsyncConnection, compiled: CompiledRead, params: dict[str, Any], *, limit_one: bool
    ) -> Sequence[Mapping[str, Any]]:
        sql, arguments = compiled.bind(params)
        # A pooled connection, checked out: its driver's connection is there.
        driver: Any = (await connection.get_raw_connection()).driver_connection
        try:
            if limit_one:
                row = await driver.fetchrow(sql, *arguments)
                return [] if row is None else [row]
            rows: Sequence[Mapping[str, Any]] = await driver.fetch(sql, *arguments)
            return rows
        except DRIVER_OUTAGES as exc:
            # The pool replaces the connection; the error handlers answer 503.
            await connection.invalidate()
            raise OperationalError(sql, arguments, exc) from exc

    def compiled(self, statement: Select[Any]) -> CompiledRead:
        known = self.compiled_reads.get(statement)
        if known is None:
            known = CompiledRead.of(statement, self.engine.dialect)
            if len(self.compiled_reads) < COMPILED_READS:
                self.compiled_reads[statement] = known
        return known


@dataclass(frozen=True)
class CompiledRead:
    """A statement compiled once for the driver: its SQL, and its parameters in order with defaults."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    @classmethod
    def of(cls, statement: Select[Any], dialect: Dialect) -> CompiledRead:
        compiled = statement.compile(dialect=dialect)
        return cls(str(compiled), tuple(compiled.positiontup or ()), compiled.params)

    def bind(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        return self.sql, [params[name] if name in params else self.defaults[name] for name in self.names]


def read_only_sessions(url: URL) -> dict[str, Any]:
    if _explicit_driver(url) == ASYNC_POSTGRES_DRIVER:
        return {"server_settings": {"default_transaction_read_only": "on"}}
    return {"options": "-c default_transaction_read_only=on"}


def async_connect_timeouts(url: URL) -> dict[str, float]:
    if _explicit_driver(url) == ASYNC_POSTGRES_DRIVER:
        return {"timeout": CONNECT_TIMEOUT_SECONDS, "command_timeout": WEB_STATEMENT_TIMEOUT_SECONDS}
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


def create_sync_database_engine(settings: Settings) -> Engine:
    url = sync_url(settings.database.url)
    if url.get_backend_name() == "sqlite":
        return create_engine(url)
    # Commands run one statement at a time.
    engine_options: dict[str, Any] = {"pool_size": 1, "max_overflow": 0}
    if _explicit_driver(url) in ("psycopg", "psycopg2"):
        # libpq waits forever for a silent server; a job should fail and be retried instead.
        engine_options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return create_engine(url, **engine_options)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # A handler can serialise what it just saved.
    return async_sessionmaker(engine, expire_on_commit=False)
