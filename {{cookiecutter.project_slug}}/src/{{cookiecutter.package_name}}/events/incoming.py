"""Incoming events: POST /events, where another app attached by URL sends signed events (events/signing.py).

Answers, in the order they are checked (a sender retries only network errors, 5xx and 429):
- 401: the X-Event-Signature header is missing or matches none of the secrets (EVENTS_SECRET, and
  EVENTS_SECRET_PREVIOUS during a rotation), or no secret is configured. Nothing is read further.
- 422: signed, but not an event (JSON with `id`, `type`, `timestamp`, `data`).
- 400: the timestamp is more than `TOLERANCE` away from now: a stale (or replayed) request.
- 202: a new event, recorded with a job for the worker, which does the work (tasks.handle_event).
- 200: an event id already recorded: a redelivery or a replay; nothing changes.
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
from ..jobs.tasks import HANDLE_EVENT
from ..logs import request_id
from ..models import ReceivedEvent
from ..web.items import plain_text
from ..web.resources import Resources
from . import signing

# How far an event's timestamp may be from this process's clock: covers clock skew between the apps and
# the time an attempt spends in flight; an older request is refused even with a valid signature.
TOLERANCE = 300


class IncomingEvent(Schema):
    id = fields.String(required=True, validate=[validate.Length(min=1, max=100), plain_text])
    type = fields.String(required=True, validate=[validate.Length(min=1, max=64), plain_text])
    # Unix seconds; bounded, so a huge number is a 422 rather than an overflow in the window check.
    timestamp = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10**12))
    data = fields.Dict(required=True)


class EventReceipt(Schema):
    """The answer to an accepted (202) or repeated (200) event."""

    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["accepted", "duplicate"]))


async def receive_event(request: Request) -> JSONResponse:
    resources: Resources = request.state.resources
    body = await request.body()
    signature = request.headers.get(signing.SIGNATURE_HEADER)
    if not signing.is_signed(body, signature, resources.event_secrets):
        raise HTTPException(401, f"Missing or invalid {signing.SIGNATURE_HEADER}.")
    event = parse(body)
    if abs(time.time() - event["timestamp"]) > TOLERANCE:
        raise HTTPException(400, f"The event's timestamp is more than {TOLERANCE} s from now.")

    async with resources.sessions() as session:
        if await session.get(ReceivedEvent, event["id"]) is not None:
            return already_recorded(event["id"])
        session.add(ReceivedEvent(id=event["id"], type=event["type"], data=event["data"]))
        # Recorded with the event: the worker acts on it even if the broker is down right now.
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
