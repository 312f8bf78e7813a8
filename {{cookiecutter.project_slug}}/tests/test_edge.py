"""The web edge runs its concerns in order: refusals too are answered, identified and logged."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from {{ cookiecutter.package_name }}.logs import configure_logging

if TYPE_CHECKING:
    from starlette.testclient import TestClient

ACCESS_LOGGER = "{{ cookiecutter.package_name }}.web.access"
TOO_LARGE = {"content-type": "application/json", "content-length": "99999999"}


def access_events(output: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in output.splitlines()]
    return [event for event in events if event["logger"] == ACCESS_LOGGER]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"host": "evil.example"}, 400), (TOO_LARGE, 413)],
    ids=["wrong-host", "body-too-large"],
)
def test_a_refused_request_is_access_logged_with_its_request_id(
    client: TestClient, capsys: pytest.CaptureFixture[str], headers: dict[str, str], status: int
) -> None:
    configure_logging(logging.INFO, "json")

    response = client.post("/items", headers={**headers, "X-Request-ID": "refused-1"})

    assert response.status_code == status
    assert response.headers.get_list("x-request-id") == ["refused-1"]
    (event,) = access_events(capsys.readouterr().out)
    assert event["request_id"] == "refused-1"
    assert event["status"] == status
    assert event["path"] == "/items"


def test_a_wrong_host_is_refused_before_its_body_is_judged(client: TestClient) -> None:
    response = client.post("/items", headers={**TOO_LARGE, "host": "evil.example"})

    assert response.status_code == 400


def test_a_probe_from_any_host_is_answered_and_not_access_logged(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(logging.INFO, "json")

    response = client.get("/healthz", headers={"host": "10.42.0.17:8000"})

    assert response.status_code == 200
    assert "x-request-id" in response.headers
    assert access_events(capsys.readouterr().out) == []
