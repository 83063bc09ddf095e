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
from bridge.state import state_of
from tenancy.audit import Actor
from tenancy.errors import BadRequest, NotFound, Unauthorized
from tenancy.runtime import Runtime

T = TypeVar("T")


class Body(BaseModel):
    """Admin bodies: strict types, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


def admin_actor(request: Request) -> Actor:
    state = state_of(request)
    if not state.admin_tokens:
        raise NotFound("Not found")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    matched = state.admin_token_matches(token.strip()) if scheme.lower() == "bearer" else None
    if matched is None:
        raise Unauthorized("Admin token required")
    return Actor.for_token(matched, info(request.scope).request_id)


class AdminRoute(APIRoute):
    """Checks the admin token before FastAPI reads the body, so a caller without the token gets
    401, never an answer about its body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            admin_actor(request)
            return await handler(request)

        return guarded


def runtime(request: Request) -> Runtime:
    return state_of(request).rt


ActorDep = Annotated[Actor, Depends(admin_actor)]
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
