"""API keys of an env, the master keyring, DEK rotation and the audit log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from bridge import responses
from bridge.routes.admin.common import (
    ActorDep,
    AdminRoute,
    Answer,
    Body,
    CallerDep,
    Limit,
    Page,
    PagingDep,
    RuntimeDep,
    answers,
)
from tenancy import audit
from tenancy.control import apikeys, secrets
from tenancy.errors import BadRequest
from tenancy.ids import is_project_id

router = APIRouter(route_class=AdminRoute)
AUDIT_ACTION = re.compile(r"[a-z]+\.[a-z]+")
AUDIT_CURSOR = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # an entry id (ULID)


class NewApiKey(Body):
    name: str
    roles: list[str] = []


class ApiKey(Answer):
    keyId: str
    name: str
    roles: list[str]
    status: str
    createdAt: str
    lastUsedAt: str | None


class ApiKeys(Page):
    items: list[ApiKey]


class NewKey(Answer):
    keyId: str
    name: str
    roles: list[str]
    status: str
    createdAt: str
    lastUsedAt: str | None
    apiKey: str


class Rewrapped(Answer):
    rewrapped: int
    byKid: dict[str, int]


class KeyStatus(Answer):
    activeKid: str
    byKid: dict[str, int]


class DekRotated(Answer):
    secrets: int


class AuditEntry(Answer):
    id: str
    ts: str
    actor: str
    action: str
    project: str | None
    env: str | None
    requestId: str | None
    detail: dict[str, Any]


class AuditPage(Page):
    items: list[AuditEntry]


@router.post(
    "/projects/{project}/envs/{env}/api-keys", status_code=201, responses=answers(NewKey, 201)
)
async def create_api_key(
    project: str, env: str, body: NewApiKey, actor: ActorDep, rt: RuntimeDep
) -> Response:
    answer = await apikeys.create(rt, actor, project, env, body.name, body.roles)
    return responses.json(answer, 201)


@router.get("/projects/{project}/envs/{env}/api-keys", responses=answers(ApiKeys))
async def list_api_keys(
    project: str,
    env: str,
    rt: RuntimeDep,
    _: ActorDep,
    paging: PagingDep,
) -> Response:
    return responses.json(paging.page(await apikeys.list_keys(rt, project, env)))


@router.delete("/projects/{project}/envs/{env}/api-keys/{key_id}", status_code=204)
async def revoke_api_key(
    project: str, env: str, key_id: str, actor: ActorDep, rt: RuntimeDep
) -> Response:
    await apikeys.revoke(rt, actor, project, env, key_id)
    return responses.empty()


@router.post("/keys/rewrap", responses=answers(Rewrapped))
async def rewrap(actor: ActorDep, rt: RuntimeDep) -> Response:
    return responses.json(await secrets.rewrap(rt, actor))


@router.get("/keys/status", responses=answers(KeyStatus))
async def key_status(rt: RuntimeDep, _: ActorDep) -> Response:
    return responses.json(await secrets.key_status(rt))


@router.post("/projects/{project}/rotate-dek", responses=answers(DekRotated))
async def rotate_dek(project: str, actor: ActorDep, rt: RuntimeDep) -> Response:
    return responses.json({"secrets": await secrets.rotate_dek(rt, actor, project)})


@router.get("/audit", responses=answers(AuditPage))
async def audit_log(
    rt: RuntimeDep,
    caller: CallerDep,
    project: str | None = None,
    action: str | None = None,
    since: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Response:
    try:
        since_ts = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise BadRequest("since must be an ISO-8601 timestamp") from None
    if since_ts is not None and since_ts.tzinfo is None:
        raise BadRequest("since must include a UTC offset")
    # Filters reach the registry as query values: malformed ones stop here (PostgreSQL refuses NUL).
    if project and not is_project_id(project):
        raise BadRequest("Invalid project filter")
    if action and not AUDIT_ACTION.fullmatch(action):
        raise BadRequest("Invalid action filter")
    if cursor and not AUDIT_CURSOR.fullmatch(cursor):
        raise BadRequest("Invalid cursor")
    project = project or caller.project  # a token bound to a project reads that project's only
    async with rt.sessions() as session:
        items, next_cursor = await audit.entries(
            session, project=project, action=action, since=since_ts, limit=limit, cursor=cursor
        )
    return responses.json({"items": items, "nextCursor": next_cursor})
