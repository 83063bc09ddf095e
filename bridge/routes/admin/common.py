"""Admin auth, body models and list pagination shared by the admin routes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from bridge.context import info
from bridge.routes.admin.access import Caller, Rule, rule_for
from bridge.state import state_of
from tenancy.audit import Actor
from tenancy.control import admintokens
from tenancy.errors import BadRequest, Forbidden, NotFound, Unauthorized
from tenancy.runtime import Runtime

T = TypeVar("T")
CALLER = "stk.admin_caller"  # the ASGI scope key `AdminRoute` sets


class Body(BaseModel):
    """Admin bodies: strict types, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


async def authorize(request: Request, rule: Rule) -> Caller:
    """The caller of an admin route, or the refusal: 404 when the admin API is off (no global
    token configured), 401 without a valid token, 403 when a scoped token lacks the rule's scope
    or names another project than its own (`docs/admin.md`)."""
    state = state_of(request)
    if not state.admin_tokens:
        raise NotFound("Not found")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("Admin token required")
    request_id = info(request.scope).request_id
    matched = state.admin_token_matches(token.strip())
    if matched is not None:
        return Caller(Actor.for_token(matched, request_id))
    record = await admintokens.authenticate(state.rt, token.strip())
    caller = Caller(Actor.for_scoped(record.token_id, request_id), record.project, record.scopes)
    if not record.scopes & rule.scopes:
        raise Forbidden("Admin token lacks the scope for this call")
    if record.project is not None:
        if rule.project == "path":
            named: str | None = request.path_params.get("project")
        else:
            named = request.query_params.get("project") if rule.project == "query" else None
        if named is not None and named != record.project:
            raise Forbidden("Admin token is not valid for this project")
    return caller


def caller(request: Request) -> Caller:
    """The caller `AdminRoute` authorised for this request."""
    found: Caller = request.scope[CALLER]
    return found


def admin_actor(request: Request) -> Actor:
    return caller(request).actor


class AdminRoute(APIRoute):
    """Checks the admin token and the route's access rule (`access.RULES`) before FastAPI reads
    the body, so a caller without the right token gets 401/403, never an answer about its body.
    A route without a rule fails when it is registered."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        rule = rule_for(self.name)

        async def guarded(request: Request) -> Response:
            request.scope[CALLER] = await authorize(request, rule)
            return await handler(request)

        return guarded


def runtime(request: Request) -> Runtime:
    return state_of(request).rt


ActorDep = Annotated[Actor, Depends(admin_actor)]
CallerDep = Annotated[Caller, Depends(caller)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
Limit = Annotated[int, Query(ge=1, le=500)]


@dataclass(frozen=True)
class Paging:
    """`limit` and `cursor` of a list endpoint (`docs/admin.md`)."""

    limit: int
    cursor: str | None

    def page(self, items: Sequence[T]) -> dict[str, Any]:
        """`{"items", "nextCursor"}` over a short, stably ordered list; the cursor is an offset."""
        if self.cursor is None:
            offset = 0
        elif self.cursor.isdigit() and len(self.cursor) < 7:
            offset = int(self.cursor)
        else:
            raise BadRequest("Invalid cursor")
        end = offset + self.limit
        more = end < len(items)
        return {"items": list(items[offset:end]), "nextCursor": str(end) if more else None}


def paging(limit: Limit = 50, cursor: str | None = None) -> Paging:
    return Paging(limit, cursor)


PagingDep = Annotated[Paging, Depends(paging)]


def answers(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route that answers `model` (the routes return plain `Response`s, so
    FastAPI learns the shape only from here): the admin OpenAPI document (`docs/admin.md`)."""
    return {status: {"model": model, "description": "OK"}}


class Answer(BaseModel):
    """An answer's documented shape; never used to validate or serialize."""

    model_config = ConfigDict(extra="forbid")


class Page(Answer):
    nextCursor: str | None
