"""What the HTTP layer keeps for the app's lifetime, header → hints extraction, and the data-plane
paths with their path-based base URL (`/p/<project>[/<env>]/...`, `docs/tenancy.md`)."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from fastapi import Request
from starlette.routing import BaseRoute
from starlette.types import Scope

from bridge.context import header_map
from tenancy.resolution import BasePath, Hints
from tenancy.runtime import Runtime
from tenancy.settings import IPNetwork, Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The data plane: resolved per tenant, CORS-enabled, reachable under a path-based base URL.
DATA_PLANE = ("/call", "/openapi.json", "/.well-known/jwks.json")
BASE_PREFIX = "/p/"


def data_plane(path: str) -> bool:
    return path in DATA_PLANE or path.startswith("/auth/")


def split_base(path: str) -> tuple[BasePath | None, str]:
    """`/p/<project>[/<env>]/<data-plane path>` → (its base, the path under it); any other path
    is returned unchanged with no base (and so answers as it would: 404 for `/p/...`).

    The data-plane path is tried right after the project first, so `/p/shop/auth/login` is
    project `shop`'s login, and an env cannot be called `call`, `auth` or `openapi.json`."""
    if not path.startswith(BASE_PREFIX):
        return None, path
    project, slash, rest = path[len(BASE_PREFIX) :].partition("/")
    if not project or not slash:
        return None, path
    if data_plane("/" + rest):
        return BasePath(project), "/" + rest
    env, slash, rest = rest.partition("/")
    if env and slash and data_plane("/" + rest):
        return BasePath(project, env), "/" + rest
    return None, path


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
        self.proxies = settings.trusted_networks()

    def client_address(self, scope: Scope) -> str:
        """The caller's address: the peer's, or behind a trusted proxy (`STK_TRUSTED_PROXIES`)
        the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy. Every
        `X-Forwarded-For` line counts, in order, since proxies may add a line of their own."""
        client = scope.get("client")
        peer = client[0] if client else ""
        if not self.proxies or not _within(peer, self.proxies):
            return peer
        hops = [
            hop.strip()
            for name, value in scope["headers"]
            if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        for hop in reversed(hops):
            if not _within(hop, self.proxies):
                return hop if _address(hop) is not None else peer
        return hops[0] if hops and _address(hops[0]) is not None else peer

    def hints(self, scope: Scope) -> Hints:
        """What the request's headers say about its tenant and caller (`docs/tenancy.md`)."""
        headers = header_map(scope)
        host = headers.get(b"host")
        if self.settings.trust_forwarded_host:
            host = headers.get(b"x-forwarded-host", host)
        bearer = None
        authorization = _text(headers.get(b"authorization"))
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            bearer = token.strip() if scheme.lower() == "bearer" else ""
        return Hints(
            host=_text(host),
            project=_text(headers.get(b"x-santokit-project")),
            env=_text(headers.get(b"x-santokit-env")),
            api_key=_text(headers.get(b"x-santokit-api-key")),
            bearer=bearer,
            origin=_text(headers.get(b"origin")),
        )

    def admin_token_matches(self, presented: str) -> str | None:
        """The matching token (for the audit actor), compared in constant time against each."""
        given = presented.encode()
        found = None
        for token in self.admin_tokens:
            if hmac.compare_digest(given, token):
                found = token.decode()
        return found


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(text: str, networks: tuple[IPNetwork, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in networks)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.stk
    return state
