"""Factor IV: one DATABASE_URL, as a platform hands it out, gives both the sync and the async engine URL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.database import (
    Reads,
    async_url,
    sync_url,
)
from {{ cookiecutter.package_name }}.settings import Settings

from conftest import url_string

PASSWORD = "p@ss%w0rd"
ENCODED_PASSWORD = "p%40ss%25w0rd"


@pytest.mark.parametrize(
    ("given", "expected_sync", "expected_async"),
    [
        pytest.param(
            "postgres://app:pw@db.example.com:5432/app",
            "postgresql+psycopg://app:pw@db.example.com:5432/app",
            "postgresql+asyncpg://app:pw@db.example.com:5432/app",
            id="postgres-scheme",
        ),
        pytest.param(
            "postgresql://app:pw@db.example.com/app",
            "postgresql+psycopg://app:pw@db.example.com/app",
            "postgresql+asyncpg://app:pw@db.example.com/app",
            id="postgresql-scheme",
        ),
        pytest.param(
            "postgresql+psycopg2://app@db.example.com/app",
            "postgresql+psycopg2://app@db.example.com/app",
            "postgresql+asyncpg://app@db.example.com/app",
            id="explicit-psycopg2-kept-for-sync",
        ),
        pytest.param(
            "postgresql+asyncpg://app@db.example.com/app",
            "postgresql+psycopg://app@db.example.com/app",
            "postgresql+asyncpg://app@db.example.com/app",
            id="explicit-asyncpg-kept-for-async",
        ),
        pytest.param(
            "postgresql+psycopg://app@db.example.com/app",
            "postgresql+psycopg://app@db.example.com/app",
            "postgresql+psycopg://app@db.example.com/app",
            id="explicit-psycopg-kept-for-both",
        ),
        pytest.param(
            "postgres://app:pw@db.example.com:5432/app?sslmode=require",
            "postgresql+psycopg://app:pw@db.example.com:5432/app?sslmode=require",
            "postgresql+asyncpg://app:pw@db.example.com:5432/app?ssl=require",
            id="sslmode-becomes-ssl-for-asyncpg",
        ),
        pytest.param(
            "sqlite:///x.db",
            "sqlite+pysqlite:///x.db",
            "sqlite+aiosqlite:///x.db",
            id="sqlite",
        ),
        pytest.param(
            f"postgres://app:{ENCODED_PASSWORD}@db.example.com/app",
            f"postgresql+psycopg://app:{ENCODED_PASSWORD}@db.example.com/app",
            f"postgresql+asyncpg://app:{ENCODED_PASSWORD}@db.example.com/app",
            id="percent-encoded-password",
        ),
    ],
)
def test_database_url_is_normalised_for_sync_and_async_drivers(
    given: str, expected_sync: str, expected_async: str
) -> None:
    url = make_url(given)

    assert url_string(sync_url(url)) == expected_sync
    assert url_string(async_url(url)) == expected_async


def test_percent_encoded_password_is_decoded_for_both_drivers() -> None:
    url = make_url(f"postgres://app:{ENCODED_PASSWORD}@db.example.com/app")

    assert sync_url(url).password == PASSWORD
    assert async_url(url).password == PASSWORD


def password_url(database_url: URL, query: str = "") -> URL:
    """The test database's URL as a platform would write it, with a password that needs encoding."""
    written = url_string(database_url.set(drivername="postgres", password=PASSWORD))
    assert ENCODED_PASSWORD in written
    return make_url(written + query)


# The server trusts local connections, so it accepts any password: what is tested is that the URL with an
# encoded password reaches each driver intact (a mangled one fails to parse or to connect).
@pytest.mark.parametrize("query", ["", "?sslmode=disable"], ids=["plain", "sslmode"])
def test_percent_encoded_password_url_connects_with_both_drivers(database_url: URL, query: str) -> None:
    url = password_url(database_url, query)
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_database()")).scalar() == database_url.database
    finally:
        engine.dispose()

    async def async_current_database() -> str | None:
        async_engine = create_async_engine(async_url(url))
        try:
            async with async_engine.connect() as connection:
                return (await connection.execute(text("SELECT current_database()"))).scalar()
        finally:
            await async_engine.dispose()

    assert asyncio.run(async_current_database()) == database_url.database


def test_read_engine_runs_each_statement_on_its_own_and_refuses_writes(settings: Settings) -> None:
    async def read_twice_then_try_to_write() -> tuple[object, object, str]:
        reads = Reads(settings)
        try:
            async with reads.connect() as connection:
                # now() is the start of the transaction: inside one, both reads would see the same instant.
                first = (await connection.execute(text("SELECT now(), pg_sleep(0.01)"))).scalar()
                second = (await connection.execute(text("SELECT now()"))).scalar()
                with pytest.raises(DBAPIError) as refused:
                    await connection.execute(text("DELETE FROM items"))
                return first, second, str(refused.value)
        finally:
            await reads.engine.dispose()

    first, second, refusal = asyncio.run(read_twice_then_try_to_write())

    assert first != second
    assert "read-only transaction" in refusal
