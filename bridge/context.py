"""The request's `RequestState` (`tenancy.calls`), kept in the ASGI scope and a context variable."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from tenancy.calls import RequestState


def info(scope: MutableMapping[str, Any]) -> RequestState:
    found: RequestState | None = scope.get("stk")
    if found is None:  # a request that bypassed the middleware (never in the app as built)
        found = scope["stk"] = RequestState("unknown")
    return found


# The request being served, for log lines written deep in the core (`docs/tenancy.md` I5).
current_request: ContextVar[RequestState | None] = ContextVar("stk_request", default=None)
