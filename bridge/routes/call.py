"""`POST /call`: body → route → tenant → release → limits → route handler (`api.md` order)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from bridge import responses
from bridge.context import info
from bridge.execute.body import parse_body, parse_route
from bridge.execute.crud import run_crud
from bridge.execute.logics import run_logic
from bridge.state import state_of
from tenancy.errors import NotFound, StkError
from tenancy.resolution import resolve

router = APIRouter()


@router.post("/call")
async def call(request: Request) -> Response:
    state = state_of(request)
    req = info(request.scope)
    path, params = parse_body(await request.body())
    route = parse_route(path)
    req.route = route.template
    resolved = await resolve(
        state.hints(request), state.rt.directory, state.rt.settings.host_suffix
    )
    tenant = resolved.tenant
    req.project, req.env, req.auth_type = tenant.project, tenant.env, resolved.principal.type
    release = await state.rt.directory.release(tenant)
    req.release = release.id
    limit = resolved.project.limits.get("maxConcurrency", state.rt.settings.tenant_max_concurrency)
    try:
        with state.limiter.slot(tenant, limit):
            if route.kind == "logics":
                client_ip = request.client.host if request.client else ""
                result = await run_logic(state.rt, resolved, release, route.name, params, client_ip)
            elif route.kind == "db":
                result = await run_crud(state.rt, resolved, release, route.name, route.op, params)
            else:
                raise NotFound(f"Route kind '{route.kind}' is not available yet")
    except StkError as exc:
        if exc.status >= 500:
            state.rt.directory.record_error(tenant, exc.message)
        raise
    if resolved.principal.type == "api_key":
        state.rt.directory.touch_api_key(resolved.principal.sub)
    return responses.data(result)
