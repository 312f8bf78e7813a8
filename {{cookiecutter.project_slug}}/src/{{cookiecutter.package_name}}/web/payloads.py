"""Reading a JSON request body so that no body, however hostile, becomes a 500; plain text only.

Not declared as JSON is 415; cut off, not UTF-8, malformed or nested too deep (RecursionError) is 400.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from marshmallow import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

JSON_MEDIA_TYPE = "application/json"


async def json_body(request: Request) -> Any:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise HTTPException(415, f"The request body must be {JSON_MEDIA_TYPE}.")
    try:
        body = await request.body()
    except ClientDisconnect:
        # A 4xx: a client's hang-up is no server error.
        raise HTTPException(400, "The client disconnected before sending the whole body.") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPException(400, "The request body is not valid JSON.") from None


def plain_text(value: str) -> None:
    """A validator refusing control characters (NUL, lone surrogates): a 422, never a database error."""
    if any(unicodedata.category(character) in ("Cc", "Cs") for character in value):
        raise ValidationError("Must not contain control characters.")
