"""Per-project CORS for the data plane (`docs/api.md`, CORS; `docs/browser.md`): origins from the
release's `config/auth.yaml` `cors.origins`, none by default.

Three parts, so no request a browser sends can skip the preflight and every answer is readable:

- `json_only` (in `Cors.gate`): a data-plane `POST` must say `Content-Type: application/json`
  (415 otherwise), which a browser never sends cross-origin without a preflight; a form or
  `text/plain` post is refused before its body is read. An actual request whose origin the
  tenant does not allow is refused (403) by admission itself (`tenancy.calls.admit`).
- `Cors.gate` answers preflights (204, or 403 for an origin not allowed); `CorsMiddleware` runs
  it for the routes on FastAPI, the plain-ASGI endpoints (`/call`, `/auth/*`, JWKS) themselves.
- `Cors.headers` gives the CORS headers of any answer, whichever layer wrote it (the request
  middleware asks for them on every response start: 408, 413, 500 included).

Which origins apply is the core's answer (`tenancy.calls.cors_origins`) from what admission
recorded on the request's state: the tenant is never resolved again. Requests without an
`Origin` header, or to other paths, get no CORS header.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.context import header, info
from bridge.errors import envelope, from_stk
from bridge.state import AppState, data_plane
from tenancy.calls import cors_origins, origin_allowed
from tenancy.errors import StkError

Header = tuple[bytes, bytes]

PREFLIGHT: list[Header] = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"authorization, content-type, if-none-match, x-request-id, x-santokit-api-key, "
        b"x-santokit-env, x-santokit-project",
    ),
    (b"access-control-max-age", b"600"),
]
# What JS may read besides the CORS-safelisted headers: the request id of every answer, and
# the back-off of a 429 (`Retry-After`, and the IETF `RateLimit-Policy` / `RateLimit` fields).
EXPOSE: Header = (
    b"access-control-expose-headers",
    b"x-request-id, retry-after, ratelimit-policy, ratelimit",
)
VARY: Header = (b"vary", b"Origin")


def is_preflight(scope: Scope) -> bool:
    return (
        scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method") is not None
    )


def json_only(scope: Scope) -> bool:
    """A `POST` body's media type is `application/json` (parameters such as `charset` allowed)."""
    if scope["method"] != "POST":
        return True
    media = header(scope, b"content-type")
    return media is not None and media.split(";", 1)[0].strip().lower() == "application/json"


class Cors:
    """The CORS headers of one answer; shared by the request middleware and the preflight."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def origins(self, scope: Scope) -> frozenset[str]:
        """The origins the request's tenant allows; raises as resolution does when the request
        names no known project. Asked once per request."""
        found: frozenset[str] | None = scope.get("stk_origins")
        if found is None:
            state = self.state
            found = scope["stk_origins"] = await cors_origins(
                state.rt, info(scope), lambda: state.hints(scope)
            )
        return found

    async def allowed(self, scope: Scope, origin: str) -> bool:
        """False too when no project can be named: no origin can be judged for an unknown
        tenant."""
        try:
            return origin_allowed(await self.origins(scope), origin)
        except StkError:
            return False

    async def headers(self, scope: Scope, *, judge: bool) -> list[Header]:
        """`Vary: Origin` on every data-plane answer to a request with an `Origin`; the allowing
        headers when the tenant allows it. `judge=False` (headers refused unread) gives `Vary`
        alone."""
        if scope["type"] != "http" or not data_plane(scope["path"]):
            return []
        origin = header(scope, b"origin")
        if origin is None:
            return []
        if not judge or not await self.allowed(scope, origin):
            return [VARY]
        allow: list[Header] = [VARY, (b"access-control-allow-origin", origin.encode("latin-1"))]
        return allow + PREFLIGHT if is_preflight(scope) else [*allow, EXPOSE]

    async def gate(self, scope: Scope) -> ASGIApp | None:
        """The data-plane gate, before any other work: the answer to a preflight, 415 for a
        `POST` that is not JSON, or None to go on."""
        if not json_only(scope):
            request_id = info(scope).request_id
            return envelope(415, "Content-Type must be application/json", request_id)
        origin = header(scope, b"origin")
        if origin is None or not is_preflight(scope):
            return None
        # A preflight carries no credential and no custom header values: it is decided on the
        # project the Host or the path names, any of its envs unless the path names one.
        request_id = info(scope).request_id
        try:
            origins = await self.origins(scope)
        except StkError as exc:
            return from_stk(exc, request_id)
        if origin_allowed(origins, origin):
            return Response(status_code=204)
        return envelope(403, "Origin not allowed", request_id)


class CorsMiddleware:
    """The data-plane gate (`Cors.gate`) for the routes on FastAPI; `/call` runs it itself."""

    def __init__(self, app: ASGIApp, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and data_plane(scope["path"]):
            refused = await self.cors.gate(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)
