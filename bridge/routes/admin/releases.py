"""Publish, history, current, rollback, promote."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field
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
from tenancy.control import releases

router = APIRouter(prefix="/projects/{project}", route_class=AdminRoute)


class PublishBody(Body):
    files: dict[str, str]
    ref: str | None = None
    applySchema: bool = False
    dryRun: bool = False


class RollbackBody(Body):
    release: str


class PromoteBody(Body):
    source: str = Field(alias="from")
    to: str


class Published(Answer):
    release: str
    reused: bool
    ddl: list[str]
    dryRun: bool
    storage: dict[str, Any] | None = None  # dry runs only


class HistoryEntry(Answer):
    release: str
    ref: str | None
    publishedAt: str
    current: bool


class History(Page):
    items: list[HistoryEntry]


class Current(Answer):
    release: str
    compiled: dict[str, Any]


class ReleaseRef(Answer):
    release: str


@router.post("/envs/{env}/releases", status_code=201, responses=answers(Published, 201))
async def publish(
    project: str, env: str, body: PublishBody, actor: ActorDep, rt: RuntimeDep
) -> Response:
    answer = await releases.publish(
        rt, actor, project, env, body.files, body.ref, body.applySchema, body.dryRun
    )
    return responses.json(answer, 201)


@router.get("/envs/{env}/releases", responses=answers(History))
async def history(
    project: str,
    env: str,
    rt: RuntimeDep,
    _: ActorDep,
    paging: PagingDep,
) -> Response:
    return responses.json(paging.page(await releases.history(rt, project, env)))


@router.get("/envs/{env}/releases/current", responses=answers(Current))
async def current(project: str, env: str, rt: RuntimeDep, _: ActorDep) -> Response:
    return responses.json(await releases.current(rt, project, env))


@router.post("/envs/{env}/releases/rollback", responses=answers(ReleaseRef))
async def rollback(
    project: str, env: str, body: RollbackBody, actor: ActorDep, rt: RuntimeDep
) -> Response:
    return responses.json(await releases.rollback(rt, actor, project, env, body.release))


@router.post("/promote", responses=answers(ReleaseRef))
async def promote(project: str, body: PromoteBody, actor: ActorDep, rt: RuntimeDep) -> Response:
    return responses.json(await releases.promote(rt, actor, project, body.source, body.to))
