"""API keys: created (shown once), listed without secrets, revoked."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from tenancy import audit, credentials
from tenancy.audit import Actor
from tenancy.control.projects import require_env
from tenancy.errors import BadRequest, NotFound
from tenancy.registry.models import ApiKey
from tenancy.runtime import Runtime

ROLE_MAX = 64
KEY_ID = re.compile(r"[a-z0-9]{16}")


def api_key_json(row: ApiKey) -> dict[str, Any]:
    return {
        "keyId": row.key_id,
        "name": row.name,
        "roles": list(row.roles),
        "status": row.status,
        "createdAt": row.created_at.isoformat(),
        "lastUsedAt": row.last_used_at.isoformat() if row.last_used_at else None,
    }


def _check_roles(roles: list[str]) -> list[str]:
    for role in roles:
        if not role or len(role) > ROLE_MAX or not role.replace("_", "").replace("-", "").isalnum():
            raise BadRequest("Invalid role name")
        if not role.isascii():
            raise BadRequest("Invalid role name")
    return sorted(set(roles))


async def create(
    rt: Runtime, actor: Actor, project: str, env: str, name: str, roles: list[str]
) -> dict[str, Any]:
    await require_env(rt, project, env)
    if not name.strip() or len(name) > 128 or not name.isprintable():
        raise BadRequest("name must be 1-128 printable characters")
    clean_roles = _check_roles(roles)
    new = credentials.new_api_key()
    async with rt.transaction() as session:
        row = ApiKey(
            key_id=new.key_id,
            project=project,
            env=env,
            name=name,
            roles=clean_roles,
            status="active",
            secret_hash=new.secret_hash,
        )
        session.add(row)
        await session.flush()
        audit.record(session, actor, "apikey.create", project, env, keyId=new.key_id, name=name)
    await rt.bus.publish("apikey.create", project, env)
    body = api_key_json(row)
    del body["status"], body["lastUsedAt"]
    return {**body, "apiKey": new.api_key}


async def list_keys(rt: Runtime, project: str, env: str) -> list[dict[str, Any]]:
    await require_env(rt, project, env)
    await rt.key_usage.write()  # this replica's latest uses; others write on their own interval
    async with rt.sessions() as session:
        query = (
            select(ApiKey)
            .where(ApiKey.project == project, ApiKey.env == env)
            .order_by(ApiKey.created_at, ApiKey.key_id)
        )
        return [api_key_json(r) for r in (await session.scalars(query)).all()]


async def revoke(rt: Runtime, actor: Actor, project: str, env: str, key_id: str) -> None:
    await require_env(rt, project, env)
    if not KEY_ID.fullmatch(key_id):
        raise NotFound("API key not found")
    async with rt.transaction() as session:
        row = await session.get(ApiKey, key_id)
        if row is None or row.project != project or row.env != env:
            raise NotFound("API key not found")
        row.status = "revoked"
        audit.record(session, actor, "apikey.revoke", project, env, keyId=key_id)
    await rt.bus.publish("apikey.revoke", project, env)
