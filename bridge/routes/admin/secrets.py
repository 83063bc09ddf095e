"""Connections and named secrets: write-only; answers never hold a value or ciphertext."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from bridge import responses
from bridge.routes.admin.common import (
    ActorDep,
    AdminRoute,
    Answer,
    Body,
    Page,
    PagingDep,
    RuntimeDep,
    answers,
)
from tenancy.control import secrets
from tenancy.pools import Pooler

router = APIRouter(prefix="/projects/{project}/envs/{env}", route_class=AdminRoute)


class ConnectionBody(Body):
    url: str
    pooler: Pooler = "none"  # docs/poolers.md


class SecretBody(Body):
    value: str


class Connection(Answer):
    alias: str
    engine: str | None
    version: int
    updatedAt: str


class Connections(Page):
    items: list[Connection]


class Secret(Answer):
    name: str
    version: int
    updatedAt: str


class Secrets(Page):
    items: list[Secret]


@router.put("/connections/{alias}", responses=answers(Connection))
async def put_connection(
    project: str,
    env: str,
    alias: str,
    body: ConnectionBody,
    actor: ActorDep,
    rt: RuntimeDep,
    verify: bool = True,
) -> Response:
    answer = await secrets.set_connection(
        rt, actor, project, env, alias, body.url, verify, body.pooler
    )
    return responses.json(answer)


@router.get("/connections", responses=answers(Connections))
async def list_connections(
    project: str, env: str, rt: RuntimeDep, _: ActorDep, paging: PagingDep
) -> Response:
    rows = await secrets.list_kind(rt, project, env, "connection")
    return responses.json(paging.page([secrets.connection_json(r) for r in rows]))


@router.delete("/connections/{alias}", status_code=204)
async def delete_connection(
    project: str, env: str, alias: str, actor: ActorDep, rt: RuntimeDep
) -> Response:
    await secrets.delete_kind(rt, actor, project, env, "connection", alias)
    return responses.empty()


@router.put("/secrets/{name}", responses=answers(Secret))
async def put_secret(
    project: str, env: str, name: str, body: SecretBody, actor: ActorDep, rt: RuntimeDep
) -> Response:
    return responses.json(await secrets.set_secret(rt, actor, project, env, name, body.value))


@router.get("/secrets", responses=answers(Secrets))
async def list_secrets(
    project: str, env: str, rt: RuntimeDep, _: ActorDep, paging: PagingDep
) -> Response:
    rows = await secrets.list_kind(rt, project, env, "secret")
    return responses.json(paging.page([secrets.secret_json(r) for r in rows]))


@router.delete("/secrets/{name}", status_code=204)
async def delete_secret(
    project: str, env: str, name: str, actor: ActorDep, rt: RuntimeDep
) -> Response:
    await secrets.delete_kind(rt, actor, project, env, "secret", name)
    return responses.empty()
