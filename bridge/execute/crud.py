"""Run one `db/<table>/<op>` call (`crud.md`) on the tenant's own pool."""

from __future__ import annotations

from typing import Any

from tenancy.crud import Statement, execute, plan_call
from tenancy.engines import QueryResult
from tenancy.errors import NotFound
from tenancy.pools import PoolKey
from tenancy.releases.model import Release
from tenancy.resolution import Resolved
from tenancy.runtime import Runtime


async def run_crud(
    rt: Runtime,
    resolved: Resolved,
    release: Release,
    table_name: str,
    op: str,
    params: dict[str, Any],
) -> Any:
    table = release.tables.get(table_name)
    if table is None:
        raise NotFound(f"Unknown table: {table_name}")
    plan = plan_call(
        release, table, op, params, resolved.principal, max_rows=rt.settings.select_max_rows
    )
    tenant = resolved.tenant
    conn = await rt.directory.connection(tenant, table.connection)
    key = PoolKey(tenant.project, tenant.env, conn.alias, conn.version)
    limits = resolved.project.limits

    async def run(statement: Statement) -> QueryResult:
        return await rt.pools.query(
            key,
            conn.url,
            statement.sql,
            statement.args,
            max_size=limits.max_pool_size,
            statement_timeout_ms=limits.statement_timeout_ms,
        )

    return await execute(plan, conn.engine, run)
