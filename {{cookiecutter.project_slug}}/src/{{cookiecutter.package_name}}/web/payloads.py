"""Reading a JSON request body so that no body, however hostile, becomes a 500.

Not declared as JSON is 415; cut off, not UTF-8, malformed or nested too deep (RecursionError) is 400.
"""

from __future__ import annotations

import json
from typing import Any

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
