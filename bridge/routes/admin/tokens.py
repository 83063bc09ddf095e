"""Scoped admin tokens: created and revoked by a global admin (`docs/admin.md`)."""

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
from tenancy.control import admintokens

router = APIRouter(prefix="/tokens", route_class=AdminRoute)


class NewToken(Body):
    name: str
    project: str | None = None
    scopes: list[str]


class Token(Answer):
    tokenId: str
    name: str
    project: str | None
    scopes: list[str]
    createdBy: str
    createdAt: str
    revokedAt: str | None


class NewTokenAnswer(Token):
    token: str  # shown only here


class Tokens(Page):
    items: list[Token]


@router.post("", status_code=201, responses=answers(NewTokenAnswer, 201))
async def create_admin_token(body: NewToken, actor: ActorDep, rt: RuntimeDep) -> Response:
    answer = await admintokens.create(rt, actor, body.name, body.project, body.scopes)
    return responses.json(answer, 201)


@router.get("", responses=answers(Tokens))
async def list_admin_tokens(
    rt: RuntimeDep, _: ActorDep, paging: PagingDep, project: str | None = None
) -> Response:
    return responses.json(paging.page(await admintokens.list_tokens(rt, project)))


@router.delete("/{token_id}", status_code=204)
async def revoke_admin_token(token_id: str, actor: ActorDep, rt: RuntimeDep) -> Response:
    await admintokens.revoke(rt, actor, token_id)
    return responses.empty()
