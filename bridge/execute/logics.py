"""Run one `logics/<name>` call (`logics.md` call-time steps) on the tenant's own pool."""

from __future__ import annotations

from typing import Any

from tenancy.errors import NotFound
from tenancy.pools import PoolKey
from tenancy.releases.model import Release
from tenancy.resolution import Resolved
from tenancy.runtime import Runtime


async def run_logic(
    rt: Runtime,
    resolved: Resolved,
    release: Release,
    name: str,
    params: dict[str, Any],
    client_ip: str,
) -> Any:
    logic = release.logics.get(name)
    if logic is None:
        raise NotFound(f"Unknown logic: {name}")
    principal = resolved.principal
    logic.check_access(principal)
    tenant = resolved.tenant
    conn = await rt.directory.connection(tenant, logic.connection)
    args = logic.bind_args(params, principal, client_ip, engine=conn.engine)
    limits = resolved.project.limits
    result = await rt.pools.query(
        PoolKey(tenant.project, tenant.env, conn.alias, conn.version),
        conn.url,
        logic.sql,
        args,
        max_size=limits.max_pool_size,
        statement_timeout_ms=limits.statement_timeout_ms,
    )
    if result.rows is not None:
        return result.rows
    return {"affected": result.affected}
