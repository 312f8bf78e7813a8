"""What the API answers, as marshmallow schemas: `openapi.py` publishes them, and the contract tests hold
every real response to them. (Handlers build their JSON directly, which is faster than dumping through a
schema; the fuzz test is what keeps the two in step.)"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..models import ItemStatus


class ItemOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([status.value for status in ItemStatus]))
    # The job's result: null until the worker has done the item's job.
    digest = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ItemPage(Schema):
    items = fields.List(fields.Nested(ItemOut), required=True)
    # The URL of the next page, or null on the last one.
    next = fields.String(required=True, allow_none=True)


class Health(Schema):
    status = fields.String(required=True, validate=validate.Equal("ok"))


class Readiness(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not ready"]))
    # What is not ready, by backing service: never a secret, only an exception's class name.
    problems = fields.Dict(keys=fields.String(), values=fields.String())


class Version(Schema):
    release = fields.String(required=True)


class ErrorDetail(Schema):
    status = fields.Integer(required=True, validate=validate.Range(min=400, max=599))
    message = fields.String(required=True)
    # Only on 422: the invalid fields, each with its messages.
    # (`fields` would shadow marshmallow's own attribute, hence the data_key.)
    invalid_fields = fields.Dict(keys=fields.String(), data_key="fields")


class Error(Schema):
    """The body of every error response (see errors.py)."""

    error = fields.Nested(ErrorDetail, required=True)
