"""Scoped admin tokens (`docs/admin.md`, "Scoped admin tokens"): created by a global admin,
bound to one project or all and a set of scopes, stored as a hash, revoked for good."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tenancy import audit, credentials
from tenancy.audit import Actor
from tenancy.control.projects import require_project
from tenancy.errors import BadRequest, NotFound, Unauthorized
from tenancy.registry.models import AdminToken, utcnow
from tenancy.registry.records import AdminTokenRecord
from tenancy.runtime import Runtime

# What each scope grants is decided per admin route (`bridge/routes/admin/access.py`).
SCOPES = ("deploy", "keys", "secrets", "read")


def token_json(row: AdminToken) -> dict[str, Any]:
    return {
        "tokenId": row.token_id,
        "name": row.name,
        "project": row.project,
        "scopes": sorted(row.scopes),
        "createdBy": row.created_by,
        "createdAt": row.created_at.isoformat(),
        "revokedAt": row.revoked_at.isoformat() if row.revoked_at else None,
    }


async def create(
    rt: Runtime, actor: Actor, name: str, project: str | None, scopes: list[str]
) -> dict[str, Any]:
    if not name.strip() or len(name) > 128 or not name.isprintable():
        raise BadRequest("name must be 1-128 printable characters")
    if not scopes or any(s not in SCOPES for s in scopes):
        raise BadRequest("scopes must be a non-empty list of " + ", ".join(SCOPES))
    if project is not None:
        await require_project(rt, project)
    new = credentials.new_api_key(credentials.ADMIN_TOKEN_PREFIX)
    async with rt.transaction() as session:
        row = AdminToken(
            token_id=new.key_id,
            name=name,
            project=project,
            scopes=sorted(set(scopes)),
            secret_hash=new.secret_hash,
            created_by=actor.name,
            created_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        audit.record(
            session, actor, "admintoken.create", project, tokenId=new.key_id, scopes=row.scopes
        )
    await rt.bus.publish("admintoken.create", project)
    return {**token_json(row), "token": new.api_key}


async def list_tokens(rt: Runtime, project: str | None) -> list[dict[str, Any]]:
    """Every token, or those bound to `project`; never a secret."""
    query = select(AdminToken).order_by(AdminToken.created_at, AdminToken.token_id)
    if project is not None:
        query = query.where(AdminToken.project == project)
    async with rt.sessions() as session:
        return [token_json(r) for r in (await session.scalars(query)).all()]


async def revoke(rt: Runtime, actor: Actor, token_id: str) -> None:
    """Final: the token answers 401 on every replica once the invalidation arrives."""
    async with rt.transaction() as session:
        row = await session.get(AdminToken, token_id)
        if row is None:
            raise NotFound("Admin token not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        audit.record(session, actor, "admintoken.revoke", row.project, tokenId=token_id)
        project = row.project
    await rt.bus.publish("admintoken.revoke", project)


async def authenticate(rt: Runtime, presented: str) -> AdminTokenRecord:
    """The live token `presented` is, or 401 (unknown, malformed, wrong secret, revoked)."""
    parsed = credentials.parse_admin_token(presented)
    if parsed is not None:
        token_id, secret = parsed
        record = await rt.directory.admin_token(token_id)
        if (
            record is not None
            and not record.revoked
            and credentials.secret_matches(secret, credentials.stored_digest(record.secret_hash))
        ):
            return record
    raise Unauthorized("Admin token required")
