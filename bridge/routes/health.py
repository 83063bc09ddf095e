"""Liveness and readiness (`docs/api.md`, "Health"; why: `docs/decisions.md`, "Readiness").

`/healthz` is pure liveness: no I/O. `/readyz` asks "should a load balancer send traffic here?":
yes while the registry and the KV store answer, and also while one of them is down but this
replica holds loaded releases it can keep serving (stale-while-error): a shared outage must not
eject every replica at once. Each check is bounded by `READY_CHECK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import Response

from bridge import responses
from bridge.state import state_of
from tenancy.errors import StkError
from tenancy.ids import is_env_id, is_project_id
from tenancy.pools import PoolKey
from tenancy.principal import Tenant

router = APIRouter()
log = logging.getLogger("stk.health")
READY_CHECK_SECONDS = 1.0  # each dependency check; both run at once


@router.get("/healthz")
async def healthz() -> Response:
    return responses.json({"ok": True})


@router.get("/readyz")
async def readyz(request: Request, project: str | None = None, env: str | None = None) -> Response:
    rt = state_of(request).rt
    if project is not None or env is not None:
        return await _tenant_ready(request, project, env)

    async def registry() -> None:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    results = await asyncio.gather(_check("registry", registry()), _check("kv", rt.kv.ping()))
    down = [name for name in results if name is not None]
    if not down:
        return responses.json({"ok": True})
    if len(rt.directory.releases):  # warm: keeps serving what it has (stale-while-error)
        return responses.json({"ok": True, "degraded": down})
    return responses.json({"ok": False, "reason": f"{down[0]} unreachable", "degraded": down}, 503)


async def _check(name: str, probe: Awaitable[None]) -> str | None:
    """None when `probe` answers within `READY_CHECK_SECONDS`, else the dependency's name."""
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            await probe
    except Exception as exc:  # any failure or the timeout: the dependency is not usable now
        log.warning("readiness: %s unreachable (%s)", name, type(exc).__name__)
        return name
    return None


async def _tenant_ready(request: Request, project: str | None, env: str | None) -> Response:
    """A tenant is ready when its release loads and its `main` connection answers."""
    rt = state_of(request).rt
    not_ready = responses.json({"ok": False}, 503)
    if not is_project_id(project) or (env is not None and not is_env_id(env)):
        return not_ready
    assert project is not None
    record = await rt.directory.project(project)
    if record is None or not record.active:
        return not_ready
    tenant = Tenant(project, env or record.default_env)
    if tenant.env not in record.envs:
        return not_ready
    try:
        await rt.directory.release(tenant)
        conn = await rt.directory.connection(tenant, "main")
        key = PoolKey(tenant.project, tenant.env, conn.alias, conn.version)
        # The tenant's own limits, so the probe uses (never resizes) the pool requests use.
        await rt.pools.query(
            key,
            conn.url,
            "SELECT 1",
            [],
            pooler=conn.pooler,
            max_size=record.limits.max_pool_size,
            statement_timeout_ms=record.limits.statement_timeout_ms,
            read_only=True,
        )
    except StkError:
        return not_ready
    return responses.json({"ok": True})
