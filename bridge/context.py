"""What the HTTP layers share about one request, kept in its ASGI scope: its `RequestState`
(`tenancy.calls`, also in a context variable) and its headers indexed once."""

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


def header_map(scope: MutableMapping[str, Any]) -> dict[bytes, bytes]:
    """The request's headers by (lower-case) name, built once per request: every layer's lookups
    are then one dict access. A repeated name keeps its last value; the security-relevant ones
    never repeat (`bridge.guard.screen` refuses a second value before anything reads them)."""
    found: dict[bytes, bytes] | None = scope.get("stk.headers")
    if found is None:
        found = scope["stk.headers"] = dict(scope["headers"])
    return found


def header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    """One header's value (`name` in lower case), or None."""
    value = header_map(scope).get(name)
    return None if value is None else value.decode("latin-1")


# The request being served, for log lines written deep in the core (`docs/tenancy.md` I5).
current_request: ContextVar[RequestState | None] = ContextVar("stk_request", default=None)
