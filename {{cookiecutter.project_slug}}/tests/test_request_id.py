"""Every response carries X-Request-ID: the caller's when it is safe to log, a fresh one otherwise."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def test_request_id_is_echoed_when_given(client: TestClient) -> None:
    response = client.get("/items", headers={"X-Request-ID": "trace-4f2a.9:b_c"})

    assert response.headers["x-request-id"] == "trace-4f2a.9:b_c"


def test_request_id_is_generated_when_absent(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]

    assert GENERATED_ID.fullmatch(first)
    assert GENERATED_ID.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "given", ["has spaces in it", "x" * 200, "new\tline"], ids=["spaces", "200-chars", "tab"]
)
def test_invalid_request_id_is_replaced(client: TestClient, given: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given})

    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


def test_request_id_is_on_error_responses_too(client: TestClient) -> None:
    response = client.get("/items/abc", headers={"X-Request-ID": "on-a-404"})

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "on-a-404"


def test_response_has_exactly_one_request_id(client: TestClient) -> None:
    response = client.get("/items", headers={"X-Request-ID": "only-once"})

    assert response.headers.get_list("x-request-id") == ["only-once"]
