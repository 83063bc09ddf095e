"""Append-only audit log: one entry per state-changing admin call, written in its transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenancy.ids import new_ulid
from tenancy.registry.models import AuditEntry, utcnow


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an admin call; `name` is `admin:<8 hex>` for a global token or
    `token:<tokenId>` for a scoped one, never the token itself."""

    name: str
    request_id: str | None = None

    @classmethod
    def for_token(cls, token: str, request_id: str | None = None) -> Actor:
        return cls("admin:" + hashlib.sha256(token.encode()).hexdigest()[:8], request_id)

    @classmethod
    def for_scoped(cls, token_id: str, request_id: str | None = None) -> Actor:
        """A scoped admin token acts as `token:<tokenId>` (its public id, `docs/admin.md`)."""
        return cls("token:" + token_id, request_id)


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    project: str | None = None,
    env: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEntry(
            id=new_ulid(),
            actor=actor.name,
            action=action,
            project=project,
            env=env,
            request_id=actor.request_id,
            detail=detail,
        )
    )


async def entries(
    session: AsyncSession,
    *,
    project: str | None,
    action: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor is the id of the last entry returned (ULIDs sort by time)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if project:
        query = query.where(AuditEntry.project == project)
    if action:
        query = query.where(AuditEntry.action == action)
    if since:
        query = query.where(AuditEntry.ts >= since)
    if cursor:
        query = query.where(AuditEntry.id < cursor)
    rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "id": r.id,
            "ts": r.ts.isoformat(),
            "actor": r.actor,
            "action": r.action,
            "project": r.project,
            "env": r.env,
            "requestId": r.request_id,
            "detail": r.detail,
        }
        for r in rows
    ]
    return items, (rows[-1].id if more and rows else None)


async def prune(session: AsyncSession, retention_days: int) -> int:
    """The only removal: entries older than the retention period."""
    cutoff = utcnow() - timedelta(days=retention_days)
    result = await session.execute(delete(AuditEntry).where(AuditEntry.ts < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
