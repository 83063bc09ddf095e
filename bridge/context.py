"""Per-request facts the access log needs, filled in as the pipeline learns them."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    project: str | None = None
    env: str | None = None
    release: str | None = None
    route: str | None = None
    auth_type: str | None = None


def info(scope: MutableMapping[str, Any]) -> RequestInfo:
    found: RequestInfo | None = scope.get("stk")
    if found is None:  # a request that bypassed the middleware (never in the app as built)
        found = scope["stk"] = RequestInfo("unknown")
    return found


# The request being served, for log lines written deep in the core (`tenancy.md` I5).
current_request: ContextVar[RequestInfo | None] = ContextVar("stk_request", default=None)
