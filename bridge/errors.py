"""The error envelope of `docs/api.md`, for every endpoint (admin included)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from bridge.context import info
from tenancy.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    StkError,
    Timeout,
    TooManyRequests,
    Unauthorized,
    dependency_of,
)

log = logging.getLogger("stk.errors")

# Status → code for answers that are not an `StkError` (a framework's 404 or 405, a body too large,
# the 500): each typed error's own code (`tenancy.errors`, their one spelling), plus the
# statuses only the HTTP layer produces.
_TYPED = (
    StkError,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooManyRequests,
    ServiceUnavailable,
    Timeout,
)
CODES = {cls.status: cls.code for cls in _TYPED} | {
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    431: "HEADERS_TOO_LARGE",
}


def envelope(
    status: int,
    message: str,
    request_id: str,
    *,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {
        "code": code or CODES.get(status, "BAD_REQUEST"),
        "message": message,
        "requestId": request_id,
    }
    if details is not None:
        error["details"] = details
    return Response(
        orjson.dumps({"error": error}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def invalid_body(errors: Sequence[Any], request_id: str) -> Response:
    """400 "Invalid request body" with one detail per pydantic error, whichever layer validated
    the body (FastAPI's routes or the plain-ASGI ones)."""
    details = [
        {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"]}
        for err in errors
    ]
    return envelope(400, "Invalid request body", request_id, details=details)


def from_stk(exc: StkError, request_id: str) -> Response:
    """The envelope of a typed error; a shared dependency's outage also logs one line naming it
    (`docs/operations.md`, "When a dependency is down")."""
    if exc.status == 503 and (dependency := dependency_of(exc)) is not None:
        # The cause's type only: a driver error's text can carry the statement and its
        # parameters (key ids, e-mail addresses, sealed values), which never go to a log.
        cause = exc.__cause__
        reason = type(cause).__name__ if cause is not None else exc.message
        log.warning("%s unavailable: %s", dependency, reason)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return envelope(
        exc.status, exc.message, request_id, code=exc.code, details=exc.details, headers=headers
    )


def install(app: FastAPI) -> None:
    async def stk_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StkError)
        return from_stk(exc, info(request.scope).request_id)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return invalid_body(exc.errors(), info(request.scope).request_id)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = 400 if exc.status_code == 422 else exc.status_code
        message = "Not found" if status == 404 else str(exc.detail)
        return envelope(status, message, info(request.scope).request_id)

    async def unexpected(request: Request, exc: Exception) -> Response:
        """Starlette's outermost layer answers an unexpected error itself (in plain text) unless
        a handler does; handing it back lets `bridge.middleware` answer every route alike."""
        raise exc

    app.add_exception_handler(StkError, stk_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
