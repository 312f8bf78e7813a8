"""Factor IV: the database is an attached resource, located by one URL and reached through one normaliser.

Platforms hand out URLs such as `postgres://user:pass@host/db?sslmode=require`. SQLAlchemy needs a driver
in the scheme, and the web process (async) and the migrations and commands (sync) need different drivers.
`async_url()` and `sync_url()` derive both from the single `DATABASE_URL`; swapping the database is a
change of that variable, never of code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from .settings import Settings

# Measured on this stack: asyncpg serves the async web path about 1.5x faster than psycopg's async mode.
ASYNC_POSTGRES_DRIVER = "asyncpg"
# psycopg 3 for migrations, commands and workers: maintained, typed, and fine for sync work.
SYNC_POSTGRES_DRIVER = "psycopg"
ASYNC_CAPABLE_POSTGRES_DRIVERS = frozenset({"asyncpg", "psycopg", "psycopg_async"})
SYNC_CAPABLE_POSTGRES_DRIVERS = frozenset({"psycopg", "psycopg2", "pg8000"})

# A database that has not accepted a connection within this many seconds is down, not slow: fail the
# request (503) instead of hanging it. The drivers' defaults are 60 s (asyncpg) and forever (libpq).
CONNECT_TIMEOUT_SECONDS = 5
# A web request's statement that runs this long is cancelled: a stalled server (or network) answers 503
# instead of holding the request, and its pooled connection, until the platform's router gives up (30 s
# on Heroku). Web requests read and write single rows; longer work belongs in a job.
WEB_STATEMENT_TIMEOUT_SECONDS = 10
# A web request that has waited this long for a pooled connection fails (503) instead of queueing on.
POOL_TIMEOUT_SECONDS = 5


def sync_url(url: URL) -> URL:
    """The URL for a synchronous engine: migrations, admin commands, workers."""
    backend, driver = url.get_backend_name(), _explicit_driver(url)
    if backend == "sqlite":
        return url.set(drivername="sqlite+pysqlite") if driver in (None, "aiosqlite") else url
    if driver in SYNC_CAPABLE_POSTGRES_DRIVERS:
        return url.set(drivername=f"postgresql+{driver}")
    return url.set(drivername=f"postgresql+{SYNC_POSTGRES_DRIVER}")


def async_url(url: URL) -> URL:
    """The URL for the web process's async engine."""
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
    """The web process's engine for writes (and the sessions they run in): one pool, sized by settings."""
    url = async_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return create_async_engine(url)
    return create_async_engine(
        url,
        # Size the pool against the requests one process serves at once; a smaller pool queues them.
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # Fail a request with 503 after a few seconds rather than waiting for a connection forever.
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # Close connections before common proxy and load-balancer idle timeouts (often 30-60 min) do.
        pool_recycle=1800,
        # No pool_pre_ping: it costs a round trip per request (about a quarter of the read path's
        # throughput). A connection the server has dropped fails its first statement with a disconnect
        # error instead; SQLAlchemy then discards every pooled connection, so one request sees the 503
        # and the next ones reconnect.
        connect_args=async_connect_timeouts(url),
    )


class Reads:
    """The web process's reads of one statement: outside any transaction, read-only, first come first served.

    A statement in a transaction costs two more round trips (BEGIN, then ROLLBACK when the session
    closes); for a read by key that was about a fifth of the request. AUTOCOMMIT is set for the whole
    engine: set per request (`execution_options`), it costs about 30% more on every checkout.

    Requests take turns through a semaphore as large as the pool. SQLAlchemy's async pool lets a request
    that arrives just as a connection comes back take it ahead of those already waiting, so under a burst
    larger than the pool some wait far longer than the rest: p99 fell from 136 ms to 25 ms with the turns.
    Writes go through the other engine (above), in the transactions they need.
    """

    def __init__(self, settings: Settings) -> None:
        url = async_url(settings.database_url)
        # A fixed pool: with requests taking turns, no overflow connection would ever be used.
        size = settings.db_pool_size
        self.turns = asyncio.Semaphore(size)
        if url.get_backend_name() == "sqlite":
            self.engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
            return
        self.engine = create_async_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_size=size,
            max_overflow=0,
            # Recycled before proxies drop it, as for writes.
            pool_recycle=1800,
            connect_args={**async_connect_timeouts(url), **read_only_sessions(url)},
        )

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        if self.turns.locked():
            # No turn within the pool's timeout is a 503 (TimeoutError), as no connection is for writes.
            # (The timer is started only for a request that must wait: it costs about 4% of a read.)
            async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                await self.turns.acquire()
        else:
            await self.turns.acquire()
        try:
            async with self.engine.connect() as connection:
                yield connection
        finally:
            self.turns.release()


def read_only_sessions(url: URL) -> dict[str, Any]:
    """Connection arguments that make the server refuse any write on the connection."""
    if _explicit_driver(url) == ASYNC_POSTGRES_DRIVER:
        return {"server_settings": {"default_transaction_read_only": "on"}}
    return {"options": "-c default_transaction_read_only=on"}


def async_connect_timeouts(url: URL) -> dict[str, float]:
    """Connect and statement timeouts in the form the URL's async driver takes them."""
    if _explicit_driver(url) == ASYNC_POSTGRES_DRIVER:
        return {"timeout": CONNECT_TIMEOUT_SECONDS, "command_timeout": WEB_STATEMENT_TIMEOUT_SECONDS}
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


def create_sync_database_engine(settings: Settings) -> Engine:
    """Engine for migrations and one-off commands: short-lived, so a small pool is enough."""
    url = sync_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return create_engine(url)
    # Commands run one statement at a time; a second connection would only sit idle.
    engine_options: dict[str, Any] = {"pool_size": 1, "max_overflow": 0}
    if _explicit_driver(url) in ("psycopg", "psycopg2"):
        # libpq waits forever for a server that does not answer; a job should fail and be retried instead.
        engine_options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return create_engine(url, **engine_options)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit, so a handler can serialise what it just saved.
    return async_sessionmaker(engine, expire_on_commit=False)
