"""Registry rows → records (`records.py`): the reads the cached lookups and the admin API share.

The only place that maps a row to a record, so a column added to a record is filled in once.
"""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenancy.limits import Limits
from tenancy.registry.models import AdminToken, ApiKey, Env, Project, ProjectHost
from tenancy.registry.records import AdminTokenRecord, ApiKeyRecord, ProjectRecord


async def project_record(session: AsyncSession, project_id: str) -> ProjectRecord | None:
    row = await session.get(Project, project_id)
    if row is None:
        return None
    # Envs and hosts in one round trip: a cold tenant's first request waits for this read.
    names = await session.execute(
        select(literal("env"), Env.id)
        .where(Env.project == project_id)
        .union_all(
            select(literal("host"), ProjectHost.host).where(ProjectHost.project == project_id)
        )
    )
    envs: list[str] = []
    hosts: list[str] = []
    for kind, name in names:
        (envs if kind == "env" else hosts).append(name)
    return ProjectRecord(
        id=row.id,
        status=row.status,
        default_env=row.default_env,
        envs=tuple(sorted(envs)),
        hosts=tuple(sorted(hosts)),
        limits=Limits.parse(row.limits or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def api_key_record(session: AsyncSession, key_id: str) -> ApiKeyRecord | None:
    row = await session.get(ApiKey, key_id)
    if row is None:
        return None
    return ApiKeyRecord(
        key_id=row.key_id,
        project=row.project,
        env=row.env,
        name=row.name,
        roles=tuple(row.roles or ()),
        status=row.status,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


async def admin_token_record(session: AsyncSession, token_id: str) -> AdminTokenRecord | None:
    row = await session.get(AdminToken, token_id)
    if row is None:
        return None
    return AdminTokenRecord(
        token_id=row.token_id,
        name=row.name,
        project=row.project,
        scopes=frozenset(row.scopes or ()),
        secret_hash=row.secret_hash,
        revoked=row.revoked_at is not None,
    )


async def host_project(session: AsyncSession, host: str) -> str | None:
    """The project a custom host name belongs to."""
    row = await session.get(ProjectHost, host)
    return row.project if row is not None else None
