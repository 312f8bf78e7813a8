"""What a route promises in /openapi.json, for routes a capability mounts (its `ApiPart`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.routing import Route

JSON = "application/json"


def json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


# Unlisted statuses are errors with the standard body.
ERROR = {"default": json_response("An error (4xx bad input, 503 a backing service is down)", "Error")}


@dataclass(frozen=True)
class ApiPart:
    """A capability's paths and schemas, for the OpenAPI document."""

    operations: dict[str, dict[str, dict[str, Any]]]
    schemas: dict[str, Any]


class DocumentedRoute(Route):
    """A route that carries its own entry in the OpenAPI document."""

    def __init__(self, path: str, endpoint: Any, *, methods: list[str], api: ApiPart) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.api = api
