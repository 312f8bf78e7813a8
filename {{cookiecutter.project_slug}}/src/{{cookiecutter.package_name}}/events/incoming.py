"""Incoming events: POST /events, where another app sends Standard Webhooks (events/signing.py).

Answers, in order: 401 unsigned, 400 outside the replay window, 422 not an event, 202 new, 200 a repeat.
"""

from __future__ import annotations

import json
import time
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..jobs.outbox import record_job
from ..logs import request_id
from ..web.contract import ERROR, JSON, ApiPart, DocumentedRoute, json_response
from ..web.payloads import plain_text
from ..web.resources import Resources
from ..web.responses import ORJSONResponse
from . import signing
from .jobs import HANDLE_EVENT
from .models import ReceivedEvent
from .settings import EventSettings

# Clock skew plus time in flight, either way, as the spec's libraries allow.
TOLERANCE = 300


class IncomingEvent(Schema):
    """The spec's recommended payload: its id is the webhook-id header."""

    type = fields.String(required=True, validate=[validate.Length(min=1, max=64), plain_text])
    # When the event happened (the attempt's time is the webhook-timestamp header).
    timestamp = fields.AwareDateTime(required=True, format="iso")
    data = fields.Dict(required=True)


class EventReceipt(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["accepted", "duplicate"]))


def route(settings: EventSettings) -> DocumentedRoute:
    """POST /events, verifying with the current secret or, during a rotation, the previous one."""
    secrets = settings.secrets

    async def receive_event(request: Request) -> ORJSONResponse:
        return await receive(request, secrets)

    return DocumentedRoute("/events", receive_event, methods=["POST"], api=API)


async def receive(request: Request, secrets: tuple[str, ...]) -> ORJSONResponse:
    resources: Resources = request.state.resources
    body = await request.body()
    try:
        signed = signing.verify(request.headers, body, secrets)
    except signing.Unsigned as unsigned:
        raise HTTPException(401, str(unsigned)) from None
    if abs(time.time() - signed.timestamp) > TOLERANCE:
        raise HTTPException(400, f"The {signing.TIMESTAMP_HEADER} is more than {TOLERANCE} s from now.")
    event, event_id = parse(body), signed.id

    async with resources.sessions() as session:
        if await session.get(ReceivedEvent, event_id) is not None:
            return already_recorded(event_id)
        session.add(ReceivedEvent(id=event_id, type=event["type"], data=event["data"]))
        # With the event: the worker acts on it even if the broker is down.
        job = record_job(HANDLE_EVENT, [event_id], request_id.get())
        session.add(job)
        try:
            await session.commit()
        except IntegrityError:  # the same event, arriving twice at once: the other request recorded it
            return already_recorded(event_id)
    await resources.jobs.publish(job)
    return ORJSONResponse({"id": event_id, "status": "accepted"}, status_code=202)


def parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    loaded: dict[str, Any] = IncomingEvent().load(document if isinstance(document, dict) else {})
    return loaded


def already_recorded(event_id: str) -> ORJSONResponse:
    return ORJSONResponse({"id": event_id, "status": "duplicate"}, status_code=200)


def header(name: str, description: str) -> dict[str, Any]:
    return {
        "in": "header",
        "name": name,
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


# The route's entry in /openapi.json, which the app factory adds with the route itself.
API = ApiPart(
    {
        "/events": {
            "post": {
                "operationId": "receiveEvent",
                "tags": ["events"],
                "summary": "An event from another app, a Standard Webhook signed with the shared secret",
                "parameters": [
                    header(signing.ID_HEADER, "The event's id: a second delivery of it is a 200"),
                    header(signing.TIMESTAMP_HEADER, f"Unix seconds; more than {TOLERANCE} s off: 400"),
                    header(
                        signing.SIGNATURE_HEADER,
                        "v1,<base64 HMAC-SHA256 of id.timestamp.body>, space-separated; none matching: 401",
                    ),
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
