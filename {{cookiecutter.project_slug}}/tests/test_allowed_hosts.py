"""Only requests addressed to an allowed host are served (ALLOWED_HOSTS); health probes answer any host."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from {{ cookiecutter.package_name }}.settings import Settings, load_settings
from {{ cookiecutter.package_name }}.web.app import create_app

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def client_allowing(settings: Settings, allowed_hosts: tuple[str, ...]) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    with TestClient(
        create_app(
            dataclasses.replace(settings, web=dataclasses.replace(settings.web, allowed_hosts=allowed_hosts))
        )
    ) as client:
        yield client


@pytest.fixture
def default_hosts_client(environment: pytest.MonkeyPatch, settings: Settings) -> Iterator[TestClient]:
    """The app with ALLOWED_HOSTS unset, as a fresh bake runs it."""
    environment.delenv("ALLOWED_HOSTS")
    yield from client_allowing(settings, load_settings().web.allowed_hosts)


def status_for_host(client: TestClient, host: str, path: str = "/items") -> int:
    return client.get(path, headers={"host": host}).status_code


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST:5000"])
def test_default_allowed_hosts_are_the_loopback_names_with_any_port(
    default_hosts_client: TestClient, host: str
) -> None:
    assert status_for_host(default_hosts_client, host) == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "localhost.evil.example", "127.0.0.2", "", "localhost:abc", "[::1", "[::1]x"]
)
def test_request_for_any_other_host_is_400_json(default_hosts_client: TestClient, host: str) -> None:
    response = default_hosts_client.get("/items", headers={"host": host})

    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400
    assert "x-request-id" in response.headers


def test_host_header_that_is_not_ascii_is_400_json(default_hosts_client: TestClient) -> None:
    response = default_hosts_client.get("/items", headers={b"host": "\u00e9.example".encode("latin-1")})

    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_probes_answer_any_host_such_as_a_pod_ip(default_hosts_client: TestClient, path: str) -> None:
    # Kubernetes probes a pod at its own IP address, which is then the Host header.
    assert status_for_host(default_hosts_client, "10.42.0.17:8000", path) == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [("api.example.com", 200), ("a.b.example.com", 200), ("example.com", 400), ("badexample.com", 400)],
)
def test_wildcard_pattern_matches_subdomains_only(settings: Settings, host: str, status: int) -> None:
    for client in client_allowing(settings, ("*.example.com",)):
        assert status_for_host(client, host) == status


def test_star_allows_any_host(settings: Settings) -> None:
    for client in client_allowing(settings, ("*",)):
        assert status_for_host(client, "anything.example") == 200
