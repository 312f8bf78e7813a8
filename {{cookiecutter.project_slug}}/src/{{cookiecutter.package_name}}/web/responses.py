"""What the API answers: `openapi.py` publishes these, and the contract tests hold responses to them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from marshmallow import Schema, fields, validate
from starlette.responses import JSONResponse

from ..models import ItemStatus


class ORJSONResponse(JSONResponse):
    """Starlette's JSONResponse, encoded by orjson: the same compact UTF-8 body, faster."""

    def render(self, content: Any) -> bytes:
        # Like json.dumps, integer keys (marshmallow's per-index messages) become strings.
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The one error body: {"error": {"status": ..., "message": ..., ...}}, described by `Error` below."""
    body = {"error": {"status": status, "message": message, **extra}}
    return ORJSONResponse(body, status_code=status, headers=headers)


class ItemOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([status.value for status in ItemStatus]))
    # Null until the item's job is done.
    digest = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ItemPage(Schema):
    items = fields.List(fields.Nested(ItemOut), required=True)
    # Null on the last page.
    next = fields.String(required=True, allow_none=True)


class Health(Schema):
    status = fields.String(required=True, validate=validate.Equal("ok"))


class Readiness(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not ready"]))
    # Never a secret: an exception's class name at most.
    problems = fields.Dict(keys=fields.String(), values=fields.String())


class Version(Schema):
    release = fields.String(required=True)


class ErrorDetail(Schema):
    status = fields.Integer(required=True, validate=validate.Range(min=400, max=599))
    message = fields.String(required=True)
    # Only on 422; `fields` would shadow marshmallow's own attribute.
    invalid_fields = fields.Dict(keys=fields.String(), data_key="fields")


class Error(Schema):
    error = fields.Nested(ErrorDetail, required=True)
