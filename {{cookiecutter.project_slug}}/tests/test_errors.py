"""Every error is a JSON body with the status it is sent with: 4xx for bad input, never an HTML page."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

if TYPE_CHECKING:
    from httpx2 import Response
    from starlette.testclient import TestClient


def error_of(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert error["message"]
    return error


def test_unknown_item_id_is_404_json(client: TestClient) -> None:
    error_of(client.get("/items/12345"), 404)


def test_item_id_beyond_bigint_is_404_json(client: TestClient) -> None:
    error_of(client.get("/items/99999999999999999999"), 404)


def test_non_numeric_item_id_is_404_json(client: TestClient) -> None:
    error_of(client.get("/items/abc"), 404)


def test_unknown_route_is_404_json(client: TestClient) -> None:
    error_of(client.get("/no/such/route"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/items/1", {"GET", "HEAD"}), ("PUT", "/items", {"GET", "HEAD", "POST"})],
    ids=["item", "collection"],
)
def test_wrong_method_is_405_json_allowing_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)

    error_of(response, 405)
    assert set(response.headers["allow"].split(", ")) == allowed


def test_malformed_json_body_is_400(client: TestClient) -> None:
    error_of(client.post("/items", content=b'{"name": ', headers={"content-type": "application/json"}), 400)


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"name": "n" * 201}, {}, {"name": None}, {"name": 123}, {"name": "a\u0000b"}],
    ids=["empty", "201-chars", "missing", "null", "number", "nul-character"],
)
def test_invalid_name_is_422_naming_name(client: TestClient, body: dict[str, Any]) -> None:
    error = error_of(client.post("/items", json=body), 422)

    assert set(error["fields"]) == {"name"}


def test_unknown_field_is_422_naming_it(client: TestClient) -> None:
    error = error_of(client.post("/items", json={"name": "ok", "colour": "red"}), 422)

    assert set(error["fields"]) == {"colour"}


@pytest.mark.parametrize(
    "body", [[{"name": "in a list"}], "just a string", 42], ids=["list", "string", "number"]
)
def test_json_body_that_is_not_an_object_is_422(client: TestClient, body: object) -> None:
    error = error_of(client.post("/items", json=body), 422)

    assert error["fields"]


def test_a_rejected_request_stores_nothing(client: TestClient) -> None:
    client.post("/items", json={"name": ""})
    client.post("/items", content=b"not json")

    assert client.get("/items").json()["items"] == []


def test_unexpected_error_is_500_json_with_the_request_id(
    settings: Settings, empty_database_url: URL
) -> None:
    from starlette.testclient import TestClient

    # An unmigrated database has no items table: the query fails in a way no handler expects.
    unmigrated = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=empty_database_url)
    )
    with TestClient(create_app(unmigrated), raise_server_exceptions=False) as client:
        response = client.get("/items", headers={"X-Request-ID": "on-a-500"})

    error_of(response, 500)
    assert response.headers["x-request-id"] == "on-a-500"


def test_name_with_an_unpaired_surrogate_is_422_not_a_database_error(client: TestClient) -> None:
    # Valid JSON ("\\ud800" is a legal escape) that no UTF-8 database column can hold.
    response = client.post(
        "/items", content=b'{"name": "\\ud800"}', headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"name"}
