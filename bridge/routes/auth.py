"""End-user accounts and the tenant's JWKS, tenant-resolved exactly like `/call` (`api.md`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from bridge import responses
from bridge.context import info
from bridge.state import AppState, state_of
from tenancy.limits import Slot
from tenancy.resolution import Resolved, resolve
from tenancy.users import Accounts

router = APIRouter()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Body):
    email: str
    password: str


class RefreshBody(Body):
    refresh_token: str


async def _resolve(request: Request) -> tuple[AppState, Resolved]:
    state = state_of(request)
    resolved = await resolve(
        state.hints(request.headers), state.rt.directory, state.rt.settings.host_suffix
    )
    req = info(request.scope)
    req.project, req.env = resolved.tenant.project, resolved.tenant.env
    req.auth_type = resolved.principal.type
    # The same budget as /call: it also bounds password guessing.
    await state.rt.limits.admit(resolved.tenant, resolved.project.limits)
    return state, resolved


def _accounts(state: AppState) -> Accounts:
    return Accounts(state.rt.sessions, state.rt.directory.signing)


def _slot(state: AppState, resolved: Resolved) -> Slot:
    """Password hashing is the costly part: bounded per tenant like `/call` (I7)."""
    return state.rt.limits.slot(resolved.tenant, resolved.project.limits)


@router.post("/auth/signup", status_code=201)
async def signup(request: Request, body: Credentials) -> Response:
    state, resolved = await _resolve(request)
    release = await state.rt.directory.release(resolved.tenant)
    with _slot(state, resolved):
        answer = await _accounts(state).signup(
            resolved.tenant, release.auth, body.email, body.password
        )
    return responses.json(answer, 201)


@router.post("/auth/login")
async def login(request: Request, body: Credentials) -> Response:
    state, resolved = await _resolve(request)
    release = await state.rt.directory.release(resolved.tenant)
    with _slot(state, resolved):
        answer = await _accounts(state).login(
            resolved.tenant, release.auth, body.email, body.password
        )
    return responses.json(answer)


@router.post("/auth/refresh")
async def refresh(request: Request, body: RefreshBody) -> Response:
    state, resolved = await _resolve(request)
    release = await state.rt.directory.release(resolved.tenant)
    answer = await _accounts(state).refresh(resolved.tenant, release.auth, body.refresh_token)
    return responses.json(answer)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, body: RefreshBody) -> Response:
    state, resolved = await _resolve(request)
    await _accounts(state).logout(resolved.tenant, body.refresh_token)
    return responses.empty()


@router.get("/auth/me")
async def me(request: Request) -> Response:
    state, resolved = await _resolve(request)
    return responses.json(await _accounts(state).me(resolved.tenant, resolved.principal))


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> Response:
    state, resolved = await _resolve(request)
    keys = await state.rt.directory.signing.ensure(resolved.tenant)
    response = responses.json(keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=60"
    return response
