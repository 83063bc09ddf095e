"""Projects and envs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tenancy import audit
from tenancy.audit import Actor
from tenancy.errors import BadRequest, Conflict, NotFound
from tenancy.ids import is_env_id, is_hostname, is_project_id
from tenancy.limits import Limits
from tenancy.principal import Tenant
from tenancy.registry import queries
from tenancy.registry.models import AdminToken, ApiKey, EndUser, Env, Project, ProjectHost, Secret
from tenancy.registry.records import ProjectRecord
from tenancy.runtime import Runtime


def project_json(record: ProjectRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "status": record.status,
        "envs": list(record.envs),
        "defaultEnv": record.default_env,
        "hosts": list(record.hosts),
        "limits": record.limits.to_json(),
        "createdAt": record.created_at.isoformat(),
        "updatedAt": record.updated_at.isoformat(),
    }


def _check_hosts(hosts: list[str]) -> list[str]:
    normal = [h.lower().rstrip(".") for h in hosts]
    bad = [h for h in normal if not is_hostname(h)]
    if bad:
        raise BadRequest("Invalid host name")
    if len(set(normal)) != len(normal):
        raise BadRequest("Duplicate host name")
    return normal


async def require_project(rt: Runtime, project_id: str) -> ProjectRecord:
    if not is_project_id(project_id):
        raise NotFound("Project not found")
    async with rt.sessions() as session:
        record = await queries.project_record(session, project_id)
    if record is None:
        raise NotFound("Project not found")
    return record


async def require_env(rt: Runtime, project_id: str, env: str) -> ProjectRecord:
    record = await require_project(rt, project_id)
    if env not in record.envs:
        raise NotFound("Env not found")
    return record


async def create(
    rt: Runtime,
    actor: Actor,
    project_id: str,
    envs: list[str] | None,
    default_env: str | None,
    hosts: list[str] | None,
) -> ProjectRecord:
    if not is_project_id(project_id):
        raise BadRequest("Invalid project id")
    env_ids = envs if envs else ["prod"]
    if not all(is_env_id(e) for e in env_ids) or len(set(env_ids)) != len(env_ids):
        raise BadRequest("Invalid env id")
    default = default_env or env_ids[0]
    if default not in env_ids:
        raise BadRequest("defaultEnv must be one of envs")
    host_names = _check_hosts(hosts or [])
    try:
        async with rt.transaction() as session:
            if await session.get(Project, project_id) is not None:
                raise Conflict("Project already exists")
            session.add(Project(id=project_id, status="active", default_env=default, limits={}))
            await session.flush()
            session.add_all(Env(project=project_id, id=e) for e in env_ids)
            session.add_all(ProjectHost(host=h, project=project_id) for h in host_names)
            await rt.vault.create_dek(session, project_id)
            audit.record(session, actor, "project.create", project_id, envs=env_ids)
    except IntegrityError:
        raise Conflict("Project or host already exists") from None
    await rt.bus.publish("project.create", project_id)
    return await require_project(rt, project_id)


async def list_projects(
    rt: Runtime, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    if cursor and not is_project_id(cursor):
        raise BadRequest("Invalid cursor")
    query = select(Project.id).order_by(Project.id).limit(limit + 1)
    if cursor:
        query = query.where(Project.id > cursor)
    async with rt.sessions() as session:
        ids = list((await session.scalars(query)).all())
    more = len(ids) > limit
    ids = ids[:limit]
    return ids, (ids[-1] if more and ids else None)


async def update(
    rt: Runtime, actor: Actor, project_id: str, changes: dict[str, Any]
) -> ProjectRecord:
    record = await require_project(rt, project_id)
    if "status" in changes and changes["status"] not in ("active", "disabled"):
        raise BadRequest("status must be active or disabled")
    if "defaultEnv" in changes and changes["defaultEnv"] not in record.envs:
        raise BadRequest("defaultEnv must be an existing env")
    hosts = _check_hosts(changes["hosts"]) if "hosts" in changes else None
    limits = Limits.parse(changes["limits"]) if "limits" in changes else None
    try:
        async with rt.transaction() as session:
            row = await session.get(Project, project_id)
            if row is None:
                raise NotFound("Project not found")
            if "status" in changes:
                row.status = changes["status"]
            if "defaultEnv" in changes:
                row.default_env = changes["defaultEnv"]
            if limits is not None:
                row.limits = limits.to_json()
            if hosts is not None:
                await session.execute(delete(ProjectHost).where(ProjectHost.project == project_id))
                await session.flush()
                session.add_all(ProjectHost(host=h, project=project_id) for h in hosts)
            audit.record(session, actor, "project.update", project_id, fields=sorted(changes))
    except IntegrityError:
        raise Conflict("Host already belongs to another project") from None
    # Disabling retires the project's pools; other changes (limits included) apply in place.
    disabled = changes.get("status") == "disabled" and record.status != "disabled"
    await rt.bus.publish("project.disable" if disabled else "project.update", project_id)
    return await require_project(rt, project_id)


async def delete_project(rt: Runtime, actor: Actor, project_id: str) -> None:
    """Crypto-shred first (the data key goes in the same transaction as every row)."""
    await require_project(rt, project_id)
    async with rt.transaction() as session:
        await rt.vault.shred(session, project_id)
        for model in (Secret, ApiKey, EndUser, AdminToken):
            await session.execute(delete(model).where(model.project == project_id))
        await session.execute(delete(Project).where(Project.id == project_id))
        audit.record(session, actor, "project.delete", project_id)
    await rt.releases.delete_project(project_id)
    await rt.bus.publish("project.delete", project_id)  # also retires its pools


async def create_env(rt: Runtime, actor: Actor, project_id: str, env: str) -> None:
    await require_project(rt, project_id)
    if not is_env_id(env):
        raise BadRequest("Invalid env id")
    try:
        async with rt.transaction() as session:
            if await session.get(Env, (project_id, env)) is not None:
                raise Conflict("Env already exists")
            session.add(Env(project=project_id, id=env))
            audit.record(session, actor, "env.create", project_id, env)
    except IntegrityError:
        raise Conflict("Env already exists") from None
    await rt.bus.publish("env.create", project_id, env)


async def delete_env(rt: Runtime, actor: Actor, project_id: str, env: str) -> None:
    record = await require_env(rt, project_id, env)
    if record.default_env == env:
        raise Conflict("The default env cannot be deleted")
    async with rt.transaction() as session:
        for model in (Secret, ApiKey, EndUser):
            await session.execute(
                delete(model).where(model.project == project_id, model.env == env)
            )
        await session.execute(delete(Env).where(Env.project == project_id, Env.id == env))
        audit.record(session, actor, "env.delete", project_id, env)
    await rt.releases.drop_env(project_id, env)
    await rt.bus.publish("env.delete", project_id, env)  # also retires its pools


async def status(rt: Runtime, project_id: str) -> dict[str, Any]:
    """Per env: current release, whether this process has it cached, pools, last error."""
    record = await require_project(rt, project_id)
    manifest = await rt.releases.get_manifest(project_id)
    pools = rt.pools.stats(project_id)
    envs = {}
    for env in record.envs:
        pointer = manifest.envs.get(env) if manifest is not None else None
        release = pointer.release if pointer is not None else None
        envs[env] = {
            "release": release,
            "publishedAt": pointer.current.published_at if pointer is not None else None,
            "releaseCached": release is not None and rt.directory.has_release(project_id, release),
            "pools": [p for p in pools if p["env"] == env],
            "lastError": rt.last_errors.get(Tenant(project_id, env)),
        }
    return {"id": record.id, "status": record.status, "envs": envs}
