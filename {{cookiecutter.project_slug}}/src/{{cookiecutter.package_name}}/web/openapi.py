"""The API contract: an OpenAPI 3.1 document built with apispec from the marshmallow schemas themselves."""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import auth, items, responses
from .contract import ERROR, JSON, ApiPart, DocumentedRoute, json_response

DISTRIBUTION = "{{ cookiecutter.project_slug }}"
TITLE = "{{ cookiecutter.project_name }}"
BEARER = "bearer"
# The scopes an operation needs are listed in its `security` (OpenAPI 3.1 allows them for any scheme).
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from the identity provider at OIDC_ISSUER, for the audience "
        "OIDC_AUDIENCE; reads need the scope items:read, writes items:write.",
    }
}

OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/healthz": {
        "get": {
            "operationId": "checkLiveness",
            "tags": ["probes"],
            "summary": "Liveness: the process serves HTTP",
            "responses": {"200": json_response("Alive", "Health"), **ERROR},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "checkReadiness",
            "tags": ["probes"],
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
            "operationId": "getVersion",
            "tags": ["probes"],
            "summary": "The release this process runs",
            "responses": {"200": json_response("The release id", "Version"), **ERROR},
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenapiDocument",
            "tags": ["contract"],
            "summary": "This document",
            "responses": {"200": {"description": "The OpenAPI document", "content": {JSON: {"schema": {}}}}},
        }
    },
    "/items": {
        "get": {
            "operationId": "listItems",
            "tags": ["items"],
            "security": [{BEARER: [auth.READ]}],
            "summary": "A page of items in id order",
            "parameters": [{"in": "query", "schema": items.ListQuery}],
            "responses": {"200": json_response("A page of items", "ItemPage"), **ERROR},
        },
        "post": {
            "operationId": "createItem",
            "tags": ["items"],
            "security": [{BEARER: [auth.WRITE]}],
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
            "operationId": "getItem",
            "tags": ["items"],
            "security": [{BEARER: [auth.READ]}],
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
}

SCHEMAS = {
    "NewItem": items.NewItem,
    "Item": responses.ItemOut,
    "ItemPage": responses.ItemPage,
    "Health": responses.Health,
    "Readiness": responses.Readiness,
    "Version": responses.Version,
    "Error": responses.Error,
}


def openapi_document(*parts: ApiPart) -> dict[str, Any]:
    spec = APISpec(
        title=TITLE,
        version=version(DISTRIBUTION),
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
    )
    schemas = {**SCHEMAS, **{name: schema for part in parts for name, schema in part.schemas.items()}}
    for name, schema in schemas.items():
        spec.components.schema(name, schema=schema)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    operations_by_path = {
        **OPERATIONS,
        **{path: ops for part in parts for path, ops in part.operations.items()},
    }
    for path, operations in operations_by_path.items():
        # apispec rewrites the operations it is given; keep the module's own copy pristine.
        spec.path(path=path, operations=copy.deepcopy(operations))
    return spec.to_dict()


def openapi_route(routes: list[BaseRoute]) -> Route:
    """GET /openapi.json: the core's paths, and those of every capability's route."""
    parts = [route.api for route in routes if isinstance(route, DocumentedRoute)]
    body = json.dumps(openapi_document(*parts)).encode()

    async def serve_document(request: Request) -> Response:
        return Response(body, media_type=JSON)

    return Route("/openapi.json", serve_document, methods=["GET"])
