"""The API contract: an OpenAPI 3.1 document built with apispec from the marshmallow schemas themselves.

Requests are described by the very schemas that validate them (`items.NewItem`, `items.ListQuery`) and
responses by `responses.py`, so the document cannot drift from the code that enforces it. It is built once
when the app is created and served as it is at GET /openapi.json.
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from starlette.requests import Request
from starlette.responses import Response

from ..events import incoming
from . import items, responses

DISTRIBUTION = "{{ cookiecutter.project_slug }}"
TITLE = "{{ cookiecutter.project_name }}"
JSON = "application/json"


def json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


# Any status not listed for an operation is an error with the standard error body.
ERROR = {"default": json_response("An error (4xx bad input, 503 a backing service is down)", "Error")}

OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/healthz": {
        "get": {
            "summary": "Liveness: the process serves HTTP",
            "responses": {"200": json_response("Alive", "Health"), **ERROR},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: database at the expected schema, broker reachable, not stopping",
            "responses": {
                "200": json_response("Ready", "Readiness"),
                "503": json_response("Not ready, naming each problem", "Readiness"),
                **ERROR,
            },
        }
    },
    "/version": {
        "get": {
            "summary": "The release this process runs",
            "responses": {"200": json_response("The release id", "Version"), **ERROR},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": {"description": "The OpenAPI document", "content": {JSON: {"schema": {}}}}},
        }
    },
    "/items": {
        "get": {
            "summary": "A page of items in id order",
            "parameters": [{"in": "query", "schema": items.ListQuery}],
            "responses": {"200": json_response("A page of items", "ItemPage"), **ERROR},
        },
        "post": {
            "summary": "Create an item; its job is enqueued",
            "requestBody": {"required": True, "content": {JSON: {"schema": "NewItem"}}},
            "responses": {
                "201": {
                    **json_response("Created, pending", "Item"),
                    "headers": {"Location": {"description": "The item's URL", "schema": {"type": "string"}}},
                },
                **ERROR,
            },
        },
    },
    "/items/{item_id}": {
        "get": {
            "summary": "One item",
            "parameters": [
                {
                    "in": "path",
                    "name": "item_id",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            ],
            "responses": {"200": json_response("The item", "Item"), **ERROR},
        }
    },
    "/events": {
        "post": {
            "summary": "An event from another app, signed with the shared secret (see events/incoming.py)",
            "parameters": [
                {
                    "in": "header",
                    "name": "X-Event-Signature",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "sha256=<hex HMAC-SHA256 of the raw body>; wrong or missing: 401",
                }
            ],
            "requestBody": {"required": True, "content": {JSON: {"schema": "IncomingEvent"}}},
            "responses": {
                "202": json_response("A new event, recorded for the worker", "EventReceipt"),
                "200": json_response("An event id already recorded: nothing changed", "EventReceipt"),
                **ERROR,
            },
        }
    },
}

SCHEMAS = {
    "NewItem": items.NewItem,
    "Item": responses.ItemOut,
    "ItemPage": responses.ItemPage,
    "Health": responses.Health,
    "Readiness": responses.Readiness,
    "Version": responses.Version,
    "Error": responses.Error,
    "IncomingEvent": incoming.IncomingEvent,
    "EventReceipt": incoming.EventReceipt,
}


def openapi_document() -> dict[str, Any]:
    spec = APISpec(
        title=TITLE,
        version=version(DISTRIBUTION),
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
    )
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for path, operations in OPERATIONS.items():
        # apispec rewrites the operations it is given; keep the module's own copy pristine.
        spec.path(path=path, operations=copy.deepcopy(operations))
    return spec.to_dict()


def openapi_endpoint() -> Any:
    """GET /openapi.json, serving the document built once, now."""
    body = json.dumps(openapi_document()).encode()

    async def serve_document(request: Request) -> Response:
        return Response(body, media_type=JSON)

    return serve_document
