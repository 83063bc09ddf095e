"""Typed errors of the core.

The core raises these; the HTTP layer turns them into the error envelope of `docs/api.md`. Keeping
the status and code on the exception means every layer agrees on what a failure means."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa


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
    """503. `dependency` names a shared dependency that failed ("registry", "Redis", "KV store"):
    the error path logs one line naming it (`docs/operations.md`, "When a dependency is down")."""

    status, code = 503, "SERVICE_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        dependency: str | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.dependency = dependency


class RegistryUnreachable(sa.SQLAlchemyError):
    """The registry refused, dropped or did not answer a connection or a statement in time.

    Raised by the registry engine (`tenancy/registry/db.py`) in place of the driver's raw
    `OSError` / `TimeoutError`, so the failure says which dependency it is; an `SQLAlchemyError`,
    so the caches' stale-while-error policy for the registry still catches it."""


class Timeout(StkError):
    status, code = 504, "TIMEOUT"


class PublishError(BadRequest):
    """A release that does not compile; `details` lists every problem at once."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(f"Release has {len(details)} problem(s)", details=details)


# Failures of the registry that mean "not reachable now", not "a bug in a statement": the pool
# wait (`TimeoutError`), a dropped or refused connection, a database that cannot run statements.
_REGISTRY_DOWN = (
    RegistryUnreachable,
    sa.TimeoutError,
    sa.DisconnectionError,
    sa.OperationalError,
    sa.InterfaceError,
)
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def dependency_of(exc: BaseException | None) -> str | None:
    """Which shared dependency `exc` (or an error it was raised from) says is down, if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ServiceUnavailable) and exc.dependency:
            return exc.dependency
        if isinstance(exc, _REGISTRY_DOWN) or (
            isinstance(exc, sa.DBAPIError) and exc.connection_invalidated
        ):
            return "registry"
        if isinstance(exc, _REDIS_DOWN):
            return "Redis"
        exc, seen = exc.__cause__, seen + 1
    return None


def as_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """An unexpected exception that is a dependency outage, as the 503 it should answer."""
    dependency = dependency_of(exc)
    if dependency is None:
        return None
    name = dependency[0].upper() + dependency[1:]
    unavailable = ServiceUnavailable(f"{name} unavailable", dependency=dependency)
    unavailable.__cause__ = exc
    return unavailable
