"""End-user accounts and the tenant's JWKS, admitted exactly like `/call` (`docs/api.md`).

Plain ASGI, reached by the request middleware ahead of FastAPI like `/call` (`docs/decisions.md`,
hot path): a login flood is answered by the thousand (429 from the sign-in back-off or the hash
bulkhead), and FastAPI's routing, dependency solving and request objects cost several times
the refusal itself. Bodies are still checked by the pydantic models below, with the same
"Invalid request body" envelope as the routes on FastAPI (`bridge.errors.invalid_body`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bridge import responses
from bridge.context import info
from bridge.cors import Cors
from bridge.errors import envelope, from_stk, invalid_body
from bridge.routes.body import read_body
from bridge.state import AppState
from tenancy.calls import Admission, admit
from tenancy.errors import StkError
from tenancy.limits import AuthGuard, Slot
from tenancy.users import Accounts


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Body):
    email: str
    password: str


class RefreshBody(Body):
    refresh_token: str


class Auth:
    """What every handler needs: the app state, the request, its body and its admission."""

    def __init__(self, state: AppState, scope: Scope, body: bytes) -> None:
        self.state = state
        self.scope = scope
        self.body = body

    async def admit(self) -> Admission:
        """The same admission and rate budget as `/call`: it also bounds password guessing."""
        state, scope = self.state, self.scope
        return await admit(state.rt, state.hints(scope), info(scope), state.client_address(scope))

    @property
    def accounts(self) -> Accounts:
        rt = self.state.rt
        return Accounts(rt.sessions, rt.directory.signing, rt.limits.hashing)

    def guard(self, admission: Admission) -> AuthGuard:
        """Failed sign-ins back off per (tenant, email) and per address (`docs/security.md`)."""
        limits = self.state.rt.limits
        return limits.auth_guard(admission.tenant, admission.release.limits, admission.address)

    def slot(self, admission: Admission) -> Slot:
        """Password hashing is the costly part: bounded per tenant like `/call` (I7)."""
        return self.state.rt.limits.slot(admission.tenant, admission.project.limits)


async def _with_password(auth: Auth, signing_up: bool) -> Response:
    """Signup and login: a password hash each, so under the tenant's slot and back-off."""
    body = Credentials.model_validate_json(auth.body)
    admission = await auth.admit()
    accounts = auth.accounts
    act = accounts.signup if signing_up else accounts.login
    with auth.slot(admission):
        answer = await act(
            admission.tenant,
            admission.release.auth,
            body.email,
            body.password,
            auth.guard(admission),
        )
    return responses.json(answer, 201 if signing_up else 200)


async def signup(auth: Auth) -> Response:
    return await _with_password(auth, signing_up=True)


async def login(auth: Auth) -> Response:
    return await _with_password(auth, signing_up=False)


async def refresh(auth: Auth) -> Response:
    body = RefreshBody.model_validate_json(auth.body)
    admission = await auth.admit()
    answer = await auth.accounts.refresh(
        admission.tenant, admission.release.auth, body.refresh_token
    )
    return responses.json(answer)


async def logout(auth: Auth) -> Response:
    body = RefreshBody.model_validate_json(auth.body)
    admission = await auth.admit()
    await auth.accounts.logout(admission.tenant, body.refresh_token)
    return responses.empty()


async def me(auth: Auth) -> Response:
    admission = await auth.admit()
    return responses.json(await auth.accounts.me(admission.tenant, admission.principal))


async def jwks(auth: Auth) -> Response:
    admission = await auth.admit()
    # Read only: an anonymous request never makes a key; the first token issued does.
    keys = await auth.state.rt.directory.signing.keyset(admission.tenant)
    response = responses.json(keys.jwks() if keys is not None else {"keys": []})
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    handle: Callable[[Auth], Awaitable[Response]]


ROUTES = {
    "/auth/signup": Route("POST", signup),
    "/auth/login": Route("POST", login),
    "/auth/refresh": Route("POST", refresh),
    "/auth/logout": Route("POST", logout),
    "/auth/me": Route("GET", me),
    "/.well-known/jwks.json": Route("GET", jwks),
}


class AuthEndpoint:
    """Every path of `ROUTES`: the data-plane gate (`Cors.gate`), the method, the body, the
    handler; typed errors and invalid bodies in the envelope of `docs/api.md`."""

    def __init__(self, state: AppState, cors: Cors) -> None:
        self.state = state
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = info(scope).request_id
        response = await self.cors.gate(scope)
        if response is None:
            route = ROUTES[scope["path"]]
            if scope["method"] != route.method:
                response = envelope(405, "Method not allowed", request_id)
                response.headers["allow"] = route.method
            else:
                body = await read_body(receive) if route.method == "POST" else b""
                try:
                    response = await route.handle(Auth(self.state, scope, body))
                except StkError as exc:
                    response = from_stk(exc, request_id)
                except ValidationError as exc:
                    response = invalid_body(exc.errors(), request_id)
        await response(scope, receive, send)
