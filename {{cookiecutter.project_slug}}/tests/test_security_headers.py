"""Every response carries the security headers, errors included; HSTS only over HTTPS from a trusted proxy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

from processes import running_web

if TYPE_CHECKING:
    from httpx2 import Response
    from starlette.testclient import TestClient

EXPECTED = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
HSTS = "strict-transport-security"


def assert_security_headers(response: Response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (name, response.status_code)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/healthz", {}, 200),
        ("GET", "/openapi.json", {}, 200),  # drop: openapi
        ("GET", "/items/12345", {}, 404),
        ("DELETE", "/items", {}, 405),
        ("POST", "/items", {"content-type": "text/plain"}, 415),
        ("POST", "/items", {"content-type": "application/json"}, 400),
        ("GET", "/items", {"host": "evil.example"}, 400),
        ("POST", "/items", {"content-type": "application/json", "content-length": "99999999"}, 413),
    ],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = client.request(method, path, headers=headers)

    assert response.status_code == status
    assert_security_headers(response)
    assert HSTS not in response.headers


def test_an_unexpected_500_carries_the_security_headers(settings: Settings, empty_database_url: URL) -> None:
    from starlette.testclient import TestClient

    # An unmigrated database has no items table: the query fails in a way no handler expects.
    unmigrated = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=empty_database_url)
    )
    with TestClient(create_app(unmigrated), raise_server_exceptions=False) as client:
        response = client.get("/items")

    assert response.status_code == 500
    assert_security_headers(response)


def test_hsts_is_sent_on_a_request_that_arrived_over_https(settings: Settings) -> None:
    from starlette.testclient import TestClient

    with TestClient(create_app(settings), base_url="https://testserver") as client:
        response = client.get("/items/12345")

    assert response.status_code == 404
    assert response.headers[HSTS].startswith("max-age=")


def test_hsts_follows_x_forwarded_proto_from_a_trusted_proxy(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # The default FORWARDED_ALLOW_IPS trusts 127.0.0.1, where this request comes from.
    with running_web(service_env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=10) as http:
        response = http.get("/version", headers={"x-forwarded-proto": "https"})

    assert response.status_code == 200
    assert response.headers[HSTS].startswith("max-age=")


def test_x_forwarded_proto_from_an_untrusted_client_sends_no_hsts(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "FORWARDED_ALLOW_IPS": "192.0.2.1"}
    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=10) as http:
        response = http.get("/version", headers={"x-forwarded-proto": "https"})

    assert response.status_code == 200
    assert HSTS not in response.headers
    assert_security_headers(response)
