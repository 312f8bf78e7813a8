"""Reading a JSON request body so that no body, however hostile, becomes a 500.

Too large is refused earlier (limits.py). Here: not declared as JSON is 415; cut off by the client, not
UTF-8, not JSON, or
nested deeper than Python's parser recurses (which raises RecursionError, not ValueError) is 400. What the
body contains is the schema's business: a top-level value that is not an object is a 422 from marshmallow.
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
        # Nobody is left to read the answer; a 4xx keeps a hang-up from being logged as a server error.
        raise HTTPException(400, "The client disconnected before sending the whole body.") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPException(400, "The request body is not valid JSON.") from None
