"""The items resource: create, read and page through items stored in the real database."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

from conftest import UNREACHABLE_DATABASE_URL

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def test_create_item_is_201_with_location_and_every_field(client: TestClient) -> None:
    response = client.post("/items", json={"name": "first"})

    assert response.status_code == 201
    item = response.json()
    assert set(item) == {"id", "name", "status", "digest", "created_at", "updated_at"}
    assert isinstance(item["id"], int)
    assert item["name"] == "first"
    assert item["status"] == "pending"
    # The job's result, filled in by the worker.
    assert item["digest"] is None
    assert datetime.fromisoformat(item["created_at"]).tzinfo is not None
    assert datetime.fromisoformat(item["updated_at"]).tzinfo is not None
    assert response.headers["location"] == f"/items/{item['id']}"


def test_name_of_200_characters_is_accepted(client: TestClient) -> None:
    response = client.post("/items", json={"name": "n" * 200})

    assert response.status_code == 201
    assert response.json()["name"] == "n" * 200


def test_get_item_returns_the_created_item(client: TestClient) -> None:
    created = client.post("/items", json={"name": "second"})

    response = client.get(created.headers["location"])

    assert response.status_code == 200
    assert response.json() == created.json()


def test_list_items_pages_by_limit_following_next_until_it_is_null(client: TestClient) -> None:
    created = [client.post("/items", json={"name": f"item {number}"}).json()["id"] for number in range(5)]

    pages: list[list[int]] = []
    url: str | None = "/items?limit=2"
    while url is not None and len(pages) < 10:
        response = client.get(url)
        assert response.status_code == 200
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        url = body["next"]

    assert pages == [created[0:2], created[2:4], created[4:5]]
    assert url is None


@pytest.mark.parametrize("limit", ["0", "abc", "101"])
def test_list_items_limit_out_of_range_or_not_a_number_is_422_naming_limit(
    client: TestClient, limit: str
) -> None:
    response = client.get("/items", params={"limit": limit})

    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"limit"}


@pytest.mark.parametrize("after", ["-1", "abc"])
def test_list_items_after_negative_or_not_a_number_is_422_naming_after(
    client: TestClient, after: str
) -> None:
    response = client.get("/items", params={"after": after})

    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"after"}


def test_list_items_ignores_unknown_query_parameters(client: TestClient) -> None:
    client.post("/items", json={"name": "cached"})

    response = client.get("/items", params={"_": "1700000000"})

    assert response.status_code == 200
    assert [item["name"] for item in response.json()["items"]] == ["cached"]


def test_create_item_is_503_json_when_the_database_is_unreachable(settings: Settings) -> None:
    from starlette.testclient import TestClient

    unreachable = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=make_url(UNREACHABLE_DATABASE_URL))
    )
    with TestClient(create_app(unreachable)) as client:
        response = client.post("/items", json={"name": "lost"})

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["status"] == 503


def test_read_on_a_connection_the_server_ended_is_a_503_json_and_the_next_read_reconnects(
    client: TestClient, engine: Engine
) -> None:
    item_id = client.post("/items", json={"name": "survivor"}).json()["id"]
    assert client.get(f"/items/{item_id}").status_code == 200  # the read pool now holds a connection
    with engine.connect() as admin:
        ended = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert ended > 0

    lost = client.get(f"/items/{item_id}")
    again = client.get(f"/items/{item_id}")

    assert (lost.status_code, lost.json()["error"]["status"]) == (503, 503)
    assert (again.status_code, again.json()["name"]) == (200, "survivor")
