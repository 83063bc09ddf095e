"""Typed errors of the core.

The core raises these; the HTTP layer turns them into the error envelope of `docs/api.md`. Keeping
the status and code on the exception means every layer agrees on what a failure means."""

from __future__ import annotations

from typing import Any


class StkError(Exception):
    """Base of every error that maps to an envelope. `message` is safe to show to callers."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(StkError):
    status, code = 400, "BAD_REQUEST"


class Unauthorized(StkError):
    status, code = 401, "UNAUTHORIZED"


class Forbidden(StkError):
    status, code = 403, "FORBIDDEN"


class NotFound(StkError):
    status, code = 404, "NOT_FOUND"


class Conflict(StkError):
    status, code = 409, "CONFLICT"


class TooManyRequests(StkError):
    status, code = 429, "TOO_MANY_REQUESTS"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(StkError):
    status, code = 503, "SERVICE_UNAVAILABLE"


class Timeout(StkError):
    status, code = 504, "TIMEOUT"


class PublishError(BadRequest):
    """A release that does not compile; `details` lists every problem at once."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(f"Release has {len(details)} problem(s)", details=details)
