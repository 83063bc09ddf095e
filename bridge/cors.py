"""Per-project CORS for the data plane (`docs/api.md`): origins from the release's
`config/auth.yaml` `cors.origins`, none by default.

Plain ASGI between the request middleware and the routes. Which origins apply is the core's
answer (`tenancy.calls.cors_origins`) from what admission recorded on the request's state: the
tenant is never resolved again. Requests without an `Origin` header, or to other paths, pass
through untouched.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.context import info
from bridge.errors import envelope, from_stk
from bridge.state import AppState, raw_headers
from tenancy.calls import cors_origins
from tenancy.errors import StkError

PREFLIGHT_HEADERS = {
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": (
        "authorization, content-type, if-none-match, x-request-id, x-santokit-api-key, "
        "x-santokit-env, x-santokit-project"
    ),
    "access-control-max-age": "600",
}
VARY = (b"vary", b"Origin")


def applies(path: str) -> bool:
    return path in ("/call", "/.well-known/jwks.json", "/openapi.json") or path.startswith("/auth/")


class CorsMiddleware:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

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
                try:
                    allowed = _allows(await self._origins(scope), origin)
                except StkError:  # no project to ask: the error goes out without CORS headers
                    allowed = False
                if allowed:
                    headers += [
                        (b"access-control-allow-origin", origin.encode("latin-1")),
                        (b"access-control-expose-headers", b"x-request-id"),
                    ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        """A preflight carries no credential and no custom header values: it is decided on the
        project the Host (or project header) names, any of its envs unless one is named."""
        request_id = info(scope).request_id
        try:
            origins = await self._origins(scope)
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

    async def _origins(self, scope: Scope) -> frozenset[str]:
        state = self.state
        return await cors_origins(state.rt, info(scope), lambda: state.hints(raw_headers(scope)))


def _allows(origins: frozenset[str], origin: str) -> bool:
    return origin in origins or "*" in origins


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
