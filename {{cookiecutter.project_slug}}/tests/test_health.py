"""Liveness never depends on the database; readiness names what keeps the process from doing useful work."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import URL, make_url

from {{ cookiecutter.package_name }}.schema import head_revisions
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

from conftest import UNREACHABLE_DATABASE_URL

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def client_for(settings: Settings, database_url: URL) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    with TestClient(create_app(dataclasses.replace(settings, database_url=database_url))) as client:
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
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_naming_the_schema_when_the_database_is_not_migrated(
    unmigrated_client: TestClient,
) -> None:
    response = unmigrated_client.get("/readyz")

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
