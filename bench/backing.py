"""The benchmark's own database and Redis database: created for one run, removed at its end."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

# The same claim the service's test runs make in Redis database 0, so a benchmark and a test run started
# at the same time never share a database number.
REDIS_CLAIM_PREFIX = "twelvefactor-test-claim:"
REDIS_CLAIM_SECONDS = 3600
REDIS_DATABASES = range(1, 16)

# Rows GET /items/{id} reads at random: enough that every read is a real index lookup.
SEED_ITEMS = 10_000
SEED = """
INSERT INTO items (name, status, digest)
SELECT 'item ' || n, 'done', md5(n::text) || md5(n::text) FROM generate_series(1, %s) AS n
"""


def with_database(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `server_url`; yields its URL, then drops it."""
    name = f"tf_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def seed_items(database_url: str) -> int:
    """Insert SEED_ITEMS rows into the migrated `items` table; returns how many."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(SEED, (SEED_ITEMS,))
        connection.execute("ANALYZE items")
    return SEED_ITEMS


def done_count(database_url: str, item_ids: list[int]) -> int:
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM items WHERE id = ANY(%s) AND status = 'done'", (item_ids,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def own_redis_database(server_url: str) -> Iterator[str]:
    """A Redis database number no test run or other benchmark holds, emptied before and after."""
    token = secrets.token_hex(8)
    claims = redis.Redis.from_url(with_database(server_url, "0"))
    # Empty databases first, high numbers first: a database that holds keys, or a low number, is more
    # likely used by something that never claims (a job queue shared by mistake stalls the job rounds).
    sizes = {}
    for candidate in REDIS_DATABASES:
        with redis.Redis.from_url(with_database(server_url, str(candidate))) as database:
            sizes[candidate] = database.dbsize()
    by_preference = sorted(REDIS_DATABASES, key=lambda candidate: (sizes[candidate] > 0, -candidate))
    number = next(
        (
            candidate
            for candidate in by_preference
            if claims.set(f"{REDIS_CLAIM_PREFIX}{candidate}", token, nx=True, ex=REDIS_CLAIM_SECONDS)
        ),
        None,
    )
    if number is None:
        raise RuntimeError("every Redis database 1-15 is claimed by a test run or another benchmark")
    url = with_database(server_url, str(number))
    database = redis.Redis.from_url(url)
    database.flushdb()
    try:
        yield url
    finally:
        database.flushdb()
        if claims.get(f"{REDIS_CLAIM_PREFIX}{number}") == token.encode():
            claims.delete(f"{REDIS_CLAIM_PREFIX}{number}")
        database.close()
        claims.close()
