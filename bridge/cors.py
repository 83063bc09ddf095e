"""Per-project CORS for the data plane (`api.md`): origins from the release's `config/auth.yaml`
`cors.origins`, none by default.

Plain ASGI inside the request middleware, so it can read the tenant a route resolved from
`scope["stk"]`. Requests without an `Origin` header, or to other paths, pass through untouched.
A preflight carries no credential and no custom header values, so it is decided on the project
named by the Host (or the project header): an origin listed by any of its envs' releases.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.context import info
from bridge.errors import envelope, from_stk
from bridge.state import AppState
from tenancy.errors import StkError
from tenancy.principal import Tenant
from tenancy.resolution import resolve

PREFLIGHT_HEADERS = {
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": (
        "authorization, content-type, x-request-id, x-santokit-api-key, x-santokit-env, "
        "x-santokit-project"
    ),
    "access-control-max-age": "600",
}
VARY = (b"vary", b"Origin")


def applies(path: str) -> bool:
    return path == "/call" or path.startswith("/auth/") or path == "/.well-known/jwks.json"


class CorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, receive, send, origin)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), VARY]
                if _allows(await _response_origins(scope), origin):
                    headers += [
                        (b"access-control-allow-origin", origin.encode("latin-1")),
                        (b"access-control-expose-headers", b"x-request-id"),
                    ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        request_id = info(scope).request_id
        try:
            origins = await _project_origins(scope)
        except StkError as exc:
            response = from_stk(exc, request_id)
        else:
            if _allows(origins, origin):
                headers = {**PREFLIGHT_HEADERS, "access-control-allow-origin": origin}
                response = Response(status_code=204, headers=headers)
            else:
                response = envelope(403, "Origin not allowed", request_id)
        response.headers["vary"] = "Origin"
        await response(scope, receive, send)


def _allows(origins: frozenset[str], origin: str) -> bool:
    return origin in origins or "*" in origins


async def _response_origins(scope: Scope) -> frozenset[str]:
    """The resolved env's origins; when resolution failed (an expired token, say), the project's,
    so the browser still lets the app read the error."""
    req = info(scope)
    try:
        if req.project and req.env:
            directory = _state(scope).rt.directory
            return (await directory.release(Tenant(req.project, req.env))).cors_origins
        return await _project_origins(scope)
    except StkError:
        return frozenset()


async def _project_origins(scope: Scope) -> frozenset[str]:
    """Resolved from the hints alone (no credential); every env's origins unless one is named."""
    state = _state(scope)
    hints = dataclasses.replace(state.hints(Request(scope).headers), api_key=None, bearer=None)
    directory = state.rt.directory
    resolved = await resolve(hints, directory, state.rt.settings.host_suffix)
    envs = (resolved.tenant.env,) if hints.env else resolved.project.envs
    origins: set[str] = set()
    for env in envs:
        try:
            origins |= (await directory.release(Tenant(resolved.tenant.project, env))).cors_origins
        except StkError:
            continue
    return frozenset(origins)


def _state(scope: Scope) -> AppState:
    state: AppState = scope["app"].state.stk
    return state


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
