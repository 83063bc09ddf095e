"""`/admin/v1/projects` and envs."""

from __future__ import annotations

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
    RuntimeDep,
    answers,
)
from tenancy.control import projects
from tenancy.errors import BadRequest

router = APIRouter(route_class=AdminRoute)


class NewProject(Body):
    id: str
    envs: list[str] | None = None
    defaultEnv: str | None = None
    hosts: list[str] | None = None


class ProjectChanges(Body):
    status: str | None = None
    defaultEnv: str | None = None
    hosts: list[str] | None = None
    limits: dict[str, Any] | None = None


class NewEnv(Body):
    id: str


class Project(Answer):
    id: str
    status: str
    envs: list[str]
    defaultEnv: str
    hosts: list[str]
    limits: dict[str, int]
    createdAt: str
    updatedAt: str


class Projects(Page):
    items: list[Project]


class Env(Answer):
    id: str
    project: str


class EnvStatus(Answer):
    release: str | None
    publishedAt: str | None
    releaseCached: bool
    pools: list[dict[str, Any]]
    lastError: str | None


class Status(Answer):
    id: str
    status: str
    envs: dict[str, EnvStatus]


@router.post("/projects", status_code=201, responses=answers(Project, 201))
async def create_project(body: NewProject, actor: ActorDep, rt: RuntimeDep) -> Response:
    record = await projects.create(rt, actor, body.id, body.envs, body.defaultEnv, body.hosts)
    return responses.json(projects.project_json(record), 201)


@router.get("/projects", responses=answers(Projects))
async def list_projects(
    rt: RuntimeDep, caller: CallerDep, limit: Limit = 50, cursor: str | None = None
) -> Response:
    if caller.project is not None:  # a token bound to one project sees that project only
        record = await rt.directory.project(caller.project) if cursor is None else None
        items = [projects.project_json(record)] if record is not None else []
        return responses.json({"items": items, "nextCursor": None})
    ids, next_cursor = await projects.list_projects(rt, limit, cursor)
    items = [projects.project_json(await projects.require_project(rt, p)) for p in ids]
    return responses.json({"items": items, "nextCursor": next_cursor})


@router.get("/projects/{project}", responses=answers(Project))
async def get_project(project: str, rt: RuntimeDep, _: ActorDep) -> Response:
    return responses.json(projects.project_json(await projects.require_project(rt, project)))


@router.patch("/projects/{project}", responses=answers(Project))
async def patch_project(
    project: str, body: ProjectChanges, actor: ActorDep, rt: RuntimeDep
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise BadRequest("Fields may not be null")
    record = await projects.update(rt, actor, project, changes)
    return responses.json(projects.project_json(record))


@router.delete("/projects/{project}", status_code=204)
async def delete_project(project: str, actor: ActorDep, rt: RuntimeDep) -> Response:
    await projects.delete_project(rt, actor, project)
    return responses.empty()


@router.post("/projects/{project}/envs", status_code=201, responses=answers(Env, 201))
async def create_env(project: str, body: NewEnv, actor: ActorDep, rt: RuntimeDep) -> Response:
    await projects.create_env(rt, actor, project, body.id)
    return responses.json({"id": body.id, "project": project}, 201)


@router.delete("/projects/{project}/envs/{env}", status_code=204)
async def delete_env(project: str, env: str, actor: ActorDep, rt: RuntimeDep) -> Response:
    await projects.delete_env(rt, actor, project, env)
    return responses.empty()


@router.get("/projects/{project}/status", responses=answers(Status))
async def project_status(project: str, rt: RuntimeDep, _: ActorDep) -> Response:
    return responses.json(await projects.status(rt, project))
