"""Incoming events: POST /events, where another app sends signed events (events/signing.py).

In order: 401 unsigned (nothing more is read), 422 not an event, 400 stale, 202 new, 200 a duplicate.
"""

from __future__ import annotations

import json
import time
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..jobs.outbox import record_job
from ..logs import request_id
from ..web.contract import ERROR, JSON, ApiPart, DocumentedRoute, json_response
from ..web.payloads import plain_text
from ..web.resources import Resources
from . import signing
from .jobs import HANDLE_EVENT
from .models import ReceivedEvent
from .settings import EventSettings

# Clock skew plus time in flight; an older request is refused, signed or not.
TOLERANCE = 300


class IncomingEvent(Schema):
    id = fields.String(required=True, validate=[validate.Length(min=1, max=100), plain_text])
    type = fields.String(required=True, validate=[validate.Length(min=1, max=64), plain_text])
    # Bounded: a huge number is a 422, not an overflow.
    timestamp = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10**12))
    data = fields.Dict(required=True)


class EventReceipt(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["accepted", "duplicate"]))


def route(settings: EventSettings) -> DocumentedRoute:
    """POST /events, verifying with the current secret or, during a rotation, the previous one."""
    secrets = settings.secrets

    async def receive_event(request: Request) -> JSONResponse:
        return await receive(request, secrets)

    return DocumentedRoute("/events", receive_event, methods=["POST"], api=API)


async def receive(request: Request, secrets: tuple[str, ...]) -> JSONResponse:
    resources: Resources = request.state.resources
    body = await request.body()
    signature = request.headers.get(signing.SIGNATURE_HEADER)
    if not signing.is_signed(body, signature, secrets):
        raise HTTPException(401, f"Missing or invalid {signing.SIGNATURE_HEADER}.")
    event = parse(body)
    if abs(time.time() - event["timestamp"]) > TOLERANCE:
        raise HTTPException(400, f"The event's timestamp is more than {TOLERANCE} s from now.")

    async with resources.sessions() as session:
        if await session.get(ReceivedEvent, event["id"]) is not None:
            return already_recorded(event["id"])
        session.add(ReceivedEvent(id=event["id"], type=event["type"], data=event["data"]))
        # With the event: the worker acts on it even if the broker is down.
        job = record_job(HANDLE_EVENT, [event["id"]], request_id.get())
        session.add(job)
        try:
            await session.commit()
        except IntegrityError:  # the same event, arriving twice at once: the other request recorded it
            return already_recorded(event["id"])
    await resources.jobs.publish(job, resources.engine)
    return JSONResponse({"id": event["id"], "status": "accepted"}, status_code=202)


def parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    loaded: dict[str, Any] = IncomingEvent().load(document if isinstance(document, dict) else {})
    return loaded


def already_recorded(event_id: str) -> JSONResponse:
    return JSONResponse({"id": event_id, "status": "duplicate"}, status_code=200)


# The route's entry in /openapi.json, which the app factory adds with the route itself.
API = ApiPart(
    {
        "/events": {
            "post": {
                "summary": "An event from another app, signed with the shared secret",
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
    },
    {"IncomingEvent": IncomingEvent, "EventReceipt": EventReceipt},
)
