"""Connections and named secrets (write-only), data-key rotation and master-key rewrap."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from tenancy import audit
from tenancy.audit import Actor
from tenancy.control.projects import require_env, require_project
from tenancy.engines.policy import UrlPolicy, parse_allow
from tenancy.errors import BadRequest, NotFound
from tenancy.ids import is_alias, is_secret_name
from tenancy.pools import Pooler, engine_of, verify_url
from tenancy.registry.models import Secret
from tenancy.runtime import Runtime


def connection_json(row: Secret) -> dict[str, Any]:
    return {
        "alias": row.name,
        "engine": row.meta.get("engine"),
        "pooler": row.meta.get("pooler", "none"),
        "version": row.version,
        "updatedAt": row.updated_at.isoformat(),
    }


def secret_json(row: Secret) -> dict[str, Any]:
    return {"name": row.name, "version": row.version, "updatedAt": row.updated_at.isoformat()}


async def set_connection(
    rt: Runtime,
    actor: Actor,
    project: str,
    env: str,
    alias: str,
    url: str,
    verify: bool,
    pooler: Pooler = "none",
) -> dict[str, Any]:
    """Store a connection URL (sealed) and the pooler in front of it (plain, in the row's meta:
    it is no secret, and `tenancy.directory` hands it to the pools with the URL)."""
    await require_env(rt, project, env)
    if not is_alias(alias):
        raise BadRequest("Invalid connection alias")
    engine = engine_of(url)
    if engine != "postgresql" and pooler != "none":
        raise BadRequest("A pooler applies to PostgreSQL connections only")
    await url_policy(rt).check(url, engine)
    if verify:
        await verify_url(url, rt.settings.tenant_connect_timeout_ms / 1000, pooler)
    meta: dict[str, object] = {"engine": engine, "pooler": pooler}
    async with rt.transaction() as session:
        row = await rt.vault.put(session, project, env, "connection", alias, url.encode(), meta)
        audit.record(
            session,
            actor,
            "connection.set",
            project,
            env,
            alias=alias,
            engine=engine,
            pooler=pooler,
        )
    await rt.bus.publish("connection.set", project, env)
    return connection_json(row)


def url_policy(rt: Runtime) -> UrlPolicy:
    settings = rt.settings
    networks, names = parse_allow(settings.tenant_db_allow)
    return UrlPolicy(settings.registry, settings.tenant_data, networks, names)


async def list_kind(rt: Runtime, project: str, env: str, kind: str) -> list[Secret]:
    await require_env(rt, project, env)
    async with rt.sessions() as session:
        query = (
            select(Secret)
            .where(Secret.project == project, Secret.env == env, Secret.kind == kind)
            .order_by(Secret.name)
        )
        return list((await session.scalars(query)).all())


async def delete_kind(
    rt: Runtime, actor: Actor, project: str, env: str, kind: str, name: str
) -> None:
    await require_env(rt, project, env)
    if not (is_alias if kind == "connection" else is_secret_name)(name):
        raise NotFound(f"{kind.capitalize()} not found")
    action = "connection.delete" if kind == "connection" else "secret.delete"
    async with rt.transaction() as session:
        result = await session.execute(
            delete(Secret).where(
                Secret.project == project,
                Secret.env == env,
                Secret.kind == kind,
                Secret.name == name,
            )
        )
        if not getattr(result, "rowcount", 0):
            raise NotFound(f"{kind.capitalize()} not found")
        audit.record(session, actor, action, project, env, name=name)
    await rt.bus.publish(action, project, env)


async def set_secret(
    rt: Runtime, actor: Actor, project: str, env: str, name: str, value: str
) -> dict[str, Any]:
    await require_env(rt, project, env)
    if not is_secret_name(name):
        raise BadRequest("Invalid secret name")
    async with rt.transaction() as session:
        row = await rt.vault.put(session, project, env, "secret", name, value.encode())
        audit.record(session, actor, "secret.set", project, env, name=name)
    await rt.bus.publish("secret.set", project, env)
    return secret_json(row)


async def rotate_dek(rt: Runtime, actor: Actor, project: str) -> int:
    await require_project(rt, project)
    async with rt.transaction() as session:
        count = await rt.vault.rotate_dek(session, project)
        audit.record(session, actor, "dek.rotate", project, secrets=count)
    await rt.bus.publish("dek.rotate", project)
    return count


async def rewrap(rt: Runtime, actor: Actor) -> dict[str, Any]:
    async with rt.transaction() as session:
        count = await rt.vault.rewrap_all(session)
        audit.record(session, actor, "keys.rewrap", rewrapped=count)
    async with rt.sessions() as session:
        by_kid = await rt.vault.status(session)
    await rt.bus.publish("keys.rewrap", None)
    return {"rewrapped": count, "byKid": by_kid}


async def key_status(rt: Runtime) -> dict[str, Any]:
    async with rt.sessions() as session:
        by_kid = await rt.vault.status(session)
    return {"activeKid": rt.vault.keyring.active_kid, "byKid": by_kid}
