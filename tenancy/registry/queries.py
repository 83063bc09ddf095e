"""Registry rows → records (`records.py`): the reads the cached lookups and the admin API share.

The only place that maps a row to a record, so a column added to a record is filled in once.
"""

from __future__ import annotations

from sqlalchemy import bindparam, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenancy.limits import Limits
from tenancy.registry.models import AdminToken, ApiKey, Env, Project, ProjectHost
from tenancy.registry.records import AdminTokenRecord, ApiKeyRecord, ProjectRecord

# The request path's statements are built once and run with their values bound: building the
# project's select (its union's column proxies) cost more than the round trip it makes
# (`docs/decisions.md`, cold tenants).
_NAMES = (
    select(literal("env").label("kind"), Env.id.label("name"), Env.project.label("owner"))
    .where(Env.project == bindparam("project"))
    .union_all(
        select(literal("host"), ProjectHost.host, ProjectHost.project).where(
            ProjectHost.project == bindparam("project")
        )
    )
    .subquery()
)
_PROJECT = (
    select(Project.__table__, _NAMES.c.kind, _NAMES.c.name)
    .outerjoin(_NAMES, _NAMES.c.owner == Project.id)
    .where(Project.id == bindparam("project"))
)


async def project_record(session: AsyncSession, project_id: str) -> ProjectRecord | None:
    """The project with its envs and hosts in one statement, one row per env or host (a cold
    tenant's first request waits for this read)."""
    rows = (await session.execute(_PROJECT, {"project": project_id})).all()
    if not rows:
        return None
    envs: list[str] = []
    hosts: list[str] = []
    for row in rows:
        if row.kind is not None:
            (envs if row.kind == "env" else hosts).append(row.name)
    row = rows[0]
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


_API_KEY = select(ApiKey.__table__).where(ApiKey.key_id == bindparam("key_id"))


async def api_key_record(session: AsyncSession, key_id: str) -> ApiKeyRecord | None:
    """A plain row, not an ORM object: nothing here is written back, and the identity map and
    instance state were most of the lookup's own time."""
    row = (await session.execute(_API_KEY, {"key_id": key_id})).first()
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
