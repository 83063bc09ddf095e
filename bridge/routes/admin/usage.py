"""Usage per tenant and day (`docs/admin.md`, "Usage")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from bridge import responses
from bridge.routes.admin.common import ActorDep, AdminRoute, RuntimeDep
from tenancy.control.projects import require_env, require_project
from tenancy.errors import BadRequest

router = APIRouter(route_class=AdminRoute)
MAX_DAYS = 366
DEFAULT_DAYS = 30


def _day(value: str | None, name: str, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD)") from None


@router.get("/projects/{project}/usage")
async def usage(
    project: str,
    rt: RuntimeDep,
    _: ActorDep,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    env: str | None = None,
) -> Response:
    if env is None:
        await require_project(rt, project)
    else:
        await require_env(rt, project, env)
    today = datetime.now(UTC).date()
    last = _day(end, "to", today)
    first = _day(start, "from", last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise BadRequest("from must not be after to")
    if (last - first).days >= MAX_DAYS:
        raise BadRequest(f"at most {MAX_DAYS} days at once")
    await rt.usage.flush()  # this replica's latest counts; others flush on their own interval
    items = await rt.usage.daily(project, first, last, env)
    return responses.json(
        {"project": project, "from": first.isoformat(), "to": last.isoformat(), "items": items}
    )
