"""Liveness never depends on the database; readiness names what keeps the process from doing useful work."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import NullPool, create_engine, text
from sqlalchemy.engine import URL, make_url

from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.schema import (
    SchemaExpectation,
    head_revisions,
)
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

from conftest import UNREACHABLE_DATABASE_URL
from processes import settled_readiness

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def client_for(settings: Settings, database_url: URL) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    with TestClient(
        create_app(
            dataclasses.replace(settings, database=dataclasses.replace(settings.database, url=database_url))
        )
    ) as client:
        yield client


@pytest.fixture
def unreachable_client(settings: Settings) -> Iterator[TestClient]:
    """The app with DATABASE_URL pointing at a port nothing listens on."""
    yield from client_for(settings, make_url(UNREACHABLE_DATABASE_URL))


@pytest.fixture
def unmigrated_client(settings: Settings, empty_database_url: URL) -> Iterator[TestClient]:
    """The app on a database the release step has never migrated."""
    yield from client_for(settings, empty_database_url)


def test_healthz_is_ok_without_touching_the_database(unreachable_client: TestClient) -> None:
    response = unreachable_client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_the_schema_is_at_head(client: TestClient) -> None:
    response = settled_readiness(client.get)

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_naming_the_schema_when_the_database_is_not_migrated(
    unmigrated_client: TestClient,
) -> None:
    response = settled_readiness(unmigrated_client.get)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert set(body["problems"]) == {"schema"}
    for head in head_revisions():
        assert head in body["problems"]["schema"]


def test_readyz_is_503_naming_the_database_when_it_is_unreachable(unreachable_client: TestClient) -> None:
    response = unreachable_client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert set(body["problems"]) == {"database"}


def test_readyz_stays_ready_when_a_newer_release_has_migrated_the_schema(
    settings: Settings, empty_database_url: URL
) -> None:
    # During a rolling deploy the release step of the new version runs before the old processes stop.
    engine = create_engine(sync_url(empty_database_url), poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('9999_from_a_newer_release')"))
    engine.dispose()

    for client in client_for(settings, empty_database_url):
        response = settled_readiness(client.get)

    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    ("current", "ready"),
    [
        pytest.param("heads", True, id="at-head"),
        pytest.param("older", False, id="behind-head"),
        pytest.param("none", False, id="never-migrated"),
        pytest.param("unknown", True, id="migrated-by-a-newer-release"),
    ],
)
def test_schema_expectation_accepts_head_or_newer_and_refuses_older(current: str, ready: bool) -> None:
    expectation = SchemaExpectation.from_migrations()
    older = expectation.known - expectation.heads
    assert older, "the migrations have a revision before head"
    revisions = {
        "heads": expectation.heads,
        "older": frozenset(sorted(older)[:1]),
        "none": frozenset(),
        "unknown": frozenset({"9999_from_a_newer_release"}),
    }[current]

    assert (expectation.problem_with(revisions) is None) == ready


def test_version_names_the_release_this_process_runs(settings: Settings, database_url: URL) -> None:
    released = dataclasses.replace(settings, release_id="v42-abc1234")

    for client in client_for(released, database_url):
        response = client.get("/version")

    assert response.status_code == 200
    assert response.json() == {"release": "v42-abc1234"}
