"""What the HTTP layer keeps for the app's lifetime, and header → hints extraction."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from fastapi import Request
from starlette.routing import BaseRoute
from starlette.types import Scope

from tenancy.resolution import Hints
from tenancy.runtime import Runtime
from tenancy.settings import Settings


class AppState:
    """Built once by `create_app` and shared by every piece of the app; the runtime is attached
    at start-up (the lifespan), before any request is served."""

    rt: Runtime

    def __init__(self, settings: Settings, admin_tokens: tuple[bytes, ...]) -> None:
        self.settings = settings
        self.admin_tokens = admin_tokens
        # The admin API's OpenAPI document, encoded at its first request (a process constant).
        self.admin_openapi: bytes | None = None
        self.admin_routes: Sequence[BaseRoute] = ()

    def hints(self, headers: Mapping[str, str]) -> Hints:
        """`headers` with lower-case names (Starlette's `Headers` or `raw_headers(scope)`)."""
        host = headers.get("host")
        if self.settings.trust_forwarded_host:
            host = headers.get("x-forwarded-host", host)
        bearer = None
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            bearer = token.strip() if scheme.lower() == "bearer" else ""
        return Hints(
            host=host,
            project=headers.get("x-santokit-project"),
            env=headers.get("x-santokit-env"),
            api_key=headers.get("x-santokit-api-key"),
            bearer=bearer,
        )

    def admin_token_matches(self, presented: str) -> str | None:
        """The matching token (for the audit actor), compared in constant time against each."""
        given = presented.encode()
        found = None
        for token in self.admin_tokens:
            if hmac.compare_digest(given, token):
                found = token.decode()
        return found


def raw_headers(scope: Scope) -> dict[str, str]:
    """The request's headers as a plain dict: cheaper than `Headers` for a few lookups."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.stk
    return state
