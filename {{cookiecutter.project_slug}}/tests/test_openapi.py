"""The API contract: GET /openapi.json is a valid OpenAPI 3.1 document, built from the marshmallow schemas
that validate requests, and it lists every route of the app."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from openapi_spec_validator import validate
from starlette.routing import Route

from {{ cookiecutter.package_name }}.web.items import ListQuery, NewItem

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def document_of(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def test_openapi_document_is_valid_openapi_3_1(client: TestClient) -> None:
    document = document_of(client)

    assert document["openapi"] == "3.1.0"
    validate(document)  # raises, naming the problem, if the document breaks the specification


def test_openapi_document_lists_every_route_and_method_of_the_app(client: TestClient) -> None:
    routes = [route for route in client.app.routes if isinstance(route, Route)]  # type: ignore[attr-defined]
    served = {
        # Starlette's "{item_id:int}" is OpenAPI's "{item_id}"; HEAD comes with every GET.
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower())
        for route in routes
        for method in route.methods or ()
        if method != "HEAD"
    }

    documented = {
        (path, method) for path, operations in document_of(client)["paths"].items() for method in operations
    }

    assert documented == served


def test_request_body_schema_is_the_schema_that_validates_new_items(client: TestClient) -> None:
    schemas = document_of(client)["components"]["schemas"]
    operation = document_of(client)["paths"]["/items"]["post"]

    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/NewItem")
    name = NewItem().fields["name"]
    assert set(schemas["NewItem"]["properties"]) == set(NewItem().fields)
    assert schemas["NewItem"]["required"] == ["name"]
    assert schemas["NewItem"]["additionalProperties"] is False
    assert name.required


def test_query_parameters_are_the_fields_of_the_schema_that_validates_them(client: TestClient) -> None:
    parameters = document_of(client)["paths"]["/items"]["get"]["parameters"]

    assert {parameter["name"] for parameter in parameters} == set(ListQuery().fields)
    assert all(parameter["in"] == "query" for parameter in parameters)
    limit = next(parameter for parameter in parameters if parameter["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)


def test_every_operation_is_named_and_tagged_for_client_generators(client: TestClient) -> None:
    operations = [
        operation
        for path in client.get("/openapi.json").json()["paths"].values()
        for operation in path.values()
    ]
    names = [operation["operationId"] for operation in operations]
    assert len(names) == len(set(names))
    assert all(operation["tags"] for operation in operations)


def test_every_items_operation_declares_the_bearer_scheme_and_its_scope(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    needed = {
        (path, method): operation.get("security")
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if path.startswith("/items")
    }
    assert needed == {
        ("/items", "get"): [{"bearer": ["items:read"]}],
        ("/items", "post"): [{"bearer": ["items:write"]}],
        ("/items/{item_id}", "get"): [{"bearer": ["items:read"]}],
    }
