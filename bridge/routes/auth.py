"""End-user accounts and the tenant's JWKS, admitted exactly like `/call` (`docs/api.md`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from bridge import responses
from bridge.context import info
from bridge.state import AppState, state_of
from tenancy.calls import Admission, admit
from tenancy.limits import AuthGuard, Slot
from tenancy.users import Accounts

router = APIRouter()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Body):
    email: str
    password: str


class RefreshBody(Body):
    refresh_token: str


async def _admit(request: Request) -> tuple[AppState, Admission]:
    """The same admission and rate budget as `/call`: it also bounds password guessing."""
    state = state_of(request)
    address = state.client_address(request.scope)
    return state, await admit(state.rt, state.hints(request.scope), info(request.scope), address)


def _accounts(state: AppState) -> Accounts:
    return Accounts(state.rt.sessions, state.rt.directory.signing, state.rt.limits.hashing)


def _guard(state: AppState, admission: Admission) -> AuthGuard:
    """Failed sign-ins back off per (tenant, email) and per address (`docs/security.md`)."""
    return state.rt.limits.auth_guard(admission.tenant, admission.release.limits, admission.address)


def _slot(state: AppState, admission: Admission) -> Slot:
    """Password hashing is the costly part: bounded per tenant like `/call` (I7)."""
    return state.rt.limits.slot(admission.tenant, admission.project.limits)


@router.post("/auth/signup", status_code=201)
async def signup(request: Request, body: Credentials) -> Response:
    state, admission = await _admit(request)
    with _slot(state, admission):
        answer = await _accounts(state).signup(
            admission.tenant,
            admission.release.auth,
            body.email,
            body.password,
            _guard(state, admission),
        )
    return responses.json(answer, 201)


@router.post("/auth/login")
async def login(request: Request, body: Credentials) -> Response:
    state, admission = await _admit(request)
    with _slot(state, admission):
        answer = await _accounts(state).login(
            admission.tenant,
            admission.release.auth,
            body.email,
            body.password,
            _guard(state, admission),
        )
    return responses.json(answer)


@router.post("/auth/refresh")
async def refresh(request: Request, body: RefreshBody) -> Response:
    state, admission = await _admit(request)
    answer = await _accounts(state).refresh(
        admission.tenant, admission.release.auth, body.refresh_token
    )
    return responses.json(answer)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, body: RefreshBody) -> Response:
    state, admission = await _admit(request)
    await _accounts(state).logout(admission.tenant, body.refresh_token)
    return responses.empty()


@router.get("/auth/me")
async def me(request: Request) -> Response:
    state, admission = await _admit(request)
    return responses.json(await _accounts(state).me(admission.tenant, admission.principal))


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> Response:
    state, admission = await _admit(request)
    # Read only: an anonymous request never makes a key; the first token issued does.
    keys = await state.rt.directory.signing.keyset(admission.tenant)
    response = responses.json(keys.jwks() if keys is not None else {"keys": []})
    response.headers["Cache-Control"] = "public, max-age=60"
    return response
