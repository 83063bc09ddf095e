"""Publish, list, rollback and promote releases of a project's envs (`manifest.md`)."""

from __future__ import annotations

from typing import Any

import orjson

from tenancy import audit
from tenancy.audit import Actor
from tenancy.control.projects import require_env
from tenancy.control.secrets import list_kind
from tenancy.errors import BadRequest, NotFound
from tenancy.releases.compiler import compile_release
from tenancy.runtime import Runtime


async def publish(
    rt: Runtime,
    actor: Actor,
    project: str,
    env: str,
    files: dict[str, str],
    ref: str | None,
    apply_schema: bool,
    dry_run: bool,
) -> dict[str, Any]:
    """Compile, store the bundle durably, then move the pointer, then announce.

    `reused` says the identical release was already stored; when it is also the env's current
    release nothing changes at all (no audit entry, no invalidation).
    """
    await require_env(rt, project, env)
    aliases = {row.name for row in await list_kind(rt, project, env, "connection")}
    compiled = compile_release(files, connections=aliases)
    if apply_schema:
        raise BadRequest("applySchema is not supported yet")
    manifest = await rt.releases.get_manifest(project) or {}
    current = manifest.get("envs", {}).get(env, {}).get("release")
    reused = await rt.kv.get(f"bundle:{project}:{compiled.id}") is not None
    answer = {"release": compiled.id, "reused": reused, "ddl": [], "dryRun": dry_run}
    if dry_run or current == compiled.id:
        return answer
    await rt.releases.put_bundle(project, compiled.id, compiled.body)
    await rt.releases.publish(project, env, compiled.id, ref)
    async with rt.transaction() as session:
        audit.record(session, actor, "release.publish", project, env, release=compiled.id, ref=ref)
    await rt.bus.publish("release.publish", project, env)
    return answer


async def history(rt: Runtime, project: str, env: str) -> list[dict[str, Any]]:
    await require_env(rt, project, env)
    entry = ((await rt.releases.get_manifest(project)) or {}).get("envs", {}).get(env)
    if not entry:
        return []
    return [{**item, "current": item["release"] == entry["release"]} for item in entry["history"]]


async def current(rt: Runtime, project: str, env: str) -> dict[str, Any]:
    await require_env(rt, project, env)
    entry = ((await rt.releases.get_manifest(project)) or {}).get("envs", {}).get(env)
    if not entry:
        raise NotFound("No release published for this env")
    body = await rt.releases.get_bundle(project, entry["release"])
    return {"release": entry["release"], "compiled": orjson.loads(body)}


async def rollback(
    rt: Runtime, actor: Actor, project: str, env: str, release: str
) -> dict[str, Any]:
    await require_env(rt, project, env)
    await rt.releases.rollback(project, env, release)
    async with rt.transaction() as session:
        audit.record(session, actor, "release.rollback", project, env, release=release)
    await rt.bus.publish("release.rollback", project, env)
    return {"release": release}


async def promote(
    rt: Runtime, actor: Actor, project: str, source: str, target: str
) -> dict[str, Any]:
    await require_env(rt, project, source)
    await require_env(rt, project, target)
    release = await rt.releases.promote(project, source, target)
    async with rt.transaction() as session:
        audit.record(
            session, actor, "release.promote", project, target, release=release, source=source
        )
    await rt.bus.publish("release.promote", project, target)
    return {"release": release}
