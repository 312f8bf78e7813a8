"""Every error is a JSON body with the right status: 4xx for bad input, 503 for a missing backing service."""

from __future__ import annotations

import logging
from typing import Any

from marshmallow import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from ..logs import request_id
from .middleware.headers import security_headers
from .middleware.request_id import REQUEST_ID_HEADER
from .responses import error_response

logger = logging.getLogger(__name__)


async def http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise TypeError(exc)
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


async def invalid_input(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ValidationError):
        raise TypeError(exc)
    fields = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return error_response(422, "The request has invalid fields.", fields=fields)


async def backing_service_unavailable(request: Request, exc: Exception) -> Response:
    # Not the client's fault, nor a bug: retrying later may work.
    logger.warning("Database unavailable: %s", exc.__class__.__name__, exc_info=exc)
    return error_response(503, "A backing service is unavailable; try again later.")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug: uvicorn logs the traceback; the client still gets JSON.
    response = error_response(500, "Internal Server Error")
    # Sent from outside the web edge: add its headers (the request id is still set).
    rid = request_id.get()
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
    response.raw_headers.extend(security_headers(request.url.scheme))
    return response


EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {
    HTTPException: http_error,
    ValidationError: invalid_input,
    OperationalError: backing_service_unavailable,
    InterfaceError: backing_service_unavailable,
    PoolTimeoutError: backing_service_unavailable,
    OSError: backing_service_unavailable,
    TimeoutError: backing_service_unavailable,
    Exception: unexpected_error,
}
