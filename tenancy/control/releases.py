"""Publish, list, rollback and promote releases of a project's envs (`docs/project-files.md`)."""

from __future__ import annotations

from typing import Any

import orjson

from tenancy.audit import Actor
from tenancy.control.projects import require_env
from tenancy.control.secrets import list_kind
from tenancy.errors import BadRequest, NotFound
from tenancy.openapi import Document, document
from tenancy.principal import Tenant
from tenancy.releases.apply.ddl import sync_schema
from tenancy.releases.compile.compiler import compile_release
from tenancy.releases.model import Release
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
    if ref is not None and (len(ref) > 200 or not ref.isprintable()):
        raise BadRequest("ref must be at most 200 printable characters")
    aliases = {row.name for row in await list_kind(rt, project, env, "connection")}
    compiled = compile_release(files, connections=aliases)
    # A dry run shows what applying would do, whether or not applySchema was also asked for.
    plan = apply_schema or dry_run
    ddl = await _schema(rt, project, env, compiled.body, apply=not dry_run) if plan else []
    manifest = await rt.releases.get_manifest(project)
    current = manifest.release(env) if manifest is not None else None
    reused = await rt.releases.has_bundle(project, compiled.id)
    answer = {"release": compiled.id, "reused": reused, "ddl": ddl, "dryRun": dry_run}
    if dry_run:
        # What the release would serve beyond the DDL: its compiled storage (`docs/storage.md`).
        answer["storage"] = compiled.doc.get("storage")
        return answer
    if current == compiled.id:
        return answer
    await rt.releases.put_bundle(project, compiled.id, compiled.body)

    async def moving(at: str) -> str:
        await rt.releases.publish(project, env, compiled.id, ref, at)
        return compiled.id

    # Intent, move, audit, broadcast: never live and unaudited after a crash (tenancy/outbox.py).
    await rt.outbox.move(actor, "release.publish", project, env, moving, ref=ref)
    return answer


async def _schema(rt: Runtime, project: str, env: str, body: bytes, *, apply: bool) -> list[str]:
    """Step 4: additive DDL on each connection the release's tables use (planned only, or run)."""
    tables = Release.load(body).tables.values()
    tenant = Tenant(project, env)
    connections = [
        await rt.directory.connection(tenant, alias)
        for alias in {table.connection for table in tables}
    ]
    urls = {conn.alias: conn.url for conn in connections}
    poolers = {conn.alias: conn.pooler for conn in connections}
    return await sync_schema(urls, tables, apply=apply, poolers=poolers)


async def history(rt: Runtime, project: str, env: str) -> list[dict[str, Any]]:
    await require_env(rt, project, env)
    manifest = await rt.releases.get_manifest(project)
    pointer = manifest.envs.get(env) if manifest is not None else None
    if pointer is None:
        return []
    # History logs every pointer move, so a rolled-back-to release appears twice: only the
    # newest entry (the move that made it current) is marked current.
    return [
        {**item.json(), "current": i == 0 and item.release == pointer.release}
        for i, item in enumerate(pointer.history)
    ]


async def current(rt: Runtime, project: str, env: str) -> dict[str, Any]:
    await require_env(rt, project, env)
    manifest = await rt.releases.get_manifest(project)
    release = manifest.release(env) if manifest is not None else None
    if release is None:
        raise NotFound("No release published for this env")
    body = await rt.releases.get_bundle(project, release)
    return {"release": release, "compiled": orjson.loads(body)}


async def rollback(
    rt: Runtime, actor: Actor, project: str, env: str, release: str
) -> dict[str, Any]:
    await require_env(rt, project, env)

    async def moving(at: str) -> str:
        await rt.releases.rollback(project, env, release, at)
        return release

    await rt.outbox.move(actor, "release.rollback", project, env, moving)
    return {"release": release}


async def promote(
    rt: Runtime, actor: Actor, project: str, source: str, target: str
) -> dict[str, Any]:
    await require_env(rt, project, source)
    await require_env(rt, project, target)
    release = await rt.outbox.move(
        actor,
        "release.promote",
        project,
        target,
        lambda at: rt.releases.promote(project, source, target, at),
        source=source,
    )
    return {"release": release}


async def openapi(rt: Runtime, project: str, env: str, roles: frozenset[str] | None) -> Document:
    """The env's current release described for a caller with `roles` (`docs/admin.md`); by
    default a caller holding every role the release names, besides `authenticated` and
    `public`, so first-match rules pick as they would for such an API key."""
    await require_env(rt, project, env)
    release = await rt.directory.release(Tenant(project, env))
    if roles is None:
        named = {
            role
            for ops in release.permissions.values()
            for rules in ops.values()
            for rule in rules
            for role in rule.roles
        }
        named |= {role for logic in release.logics.values() for role in logic.roles}
        roles = frozenset(named | {"authenticated", "public"})
    return document(release, roles, max_rows=rt.settings.select_max_rows)
