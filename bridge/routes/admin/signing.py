"""Token signing keys of an env."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from bridge import responses
from bridge.routes.admin.common import ActorDep, AdminRoute, Answer, RuntimeDep, answers
from tenancy.control import signing

router = APIRouter(route_class=AdminRoute)


class Rotated(Answer):
    kid: str


@router.post("/projects/{project}/envs/{env}/signing-keys/rotate", responses=answers(Rotated))
async def rotate_signing_keys(project: str, env: str, actor: ActorDep, rt: RuntimeDep) -> Response:
    return responses.json(await signing.rotate(rt, actor, project, env))
