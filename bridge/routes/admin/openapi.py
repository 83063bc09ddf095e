"""`GET /admin/v1/openapi.json`: the admin API's OpenAPI 3.1 document, built once per process
from the admin routes themselves (`docs/admin.md` "OpenAPI").

FastAPI derives the paths, parameters and bodies from the routes and the answers from their
`responses=` models; what it cannot know is added here: the admin token scheme, and the error
envelope under the statuses the routes really answer (our 400 where FastAPI would say 422, 401
without the token, 403 for a scoped token without the scope or for another project, 404 for an
unknown project or env, 409 where a change can conflict, 413 for a
body past the limit, 503 when the registry or KV store is down).

Also `GET /admin/v1/projects/{p}/envs/{e}/openapi.json`: a tenant's document for a role set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response
from starlette.routing import BaseRoute

from bridge.routes.admin.common import ActorDep, AdminRoute, RuntimeDep
from bridge.routes.openapi import serve
from bridge.state import state_of
from tenancy.control import releases
from tenancy.openapi import ERROR_SCHEMA, ERROR_TEXT

router = APIRouter(route_class=AdminRoute)
PREFIX = "/admin/v1"

# (method, path below the prefix) → statuses beyond every route's 400, 401, 403 (a scoped token
# without the scope or for another project), 404 and 503.
CONFLICTS = {
    ("post", "/projects"),
    ("patch", "/projects/{project}"),
    ("post", "/projects/{project}/envs"),
    ("delete", "/projects/{project}/envs/{env}"),
    ("post", "/projects/{project}/envs/{env}/releases"),
    ("post", "/projects/{project}/envs/{env}/releases/rollback"),
    ("post", "/projects/{project}/promote"),
}
TIMEOUTS = {("post", "/projects/{project}/envs/{env}/releases")}  # the schema apply's DDL
ADMIN_TEXT = {
    "401": "Admin token missing, unknown or revoked",
    "403": "A scoped admin token without this call's scope, or bound to another project",
    "404": "Unknown project, env or resource (everywhere when no admin token is configured)",
    "409": "Taken id or host, the default env, a non-additive schema change, a busy manifest",
}


@router.get("/openapi.json")
async def admin_openapi(request: Request, _: ActorDep) -> Response:
    state = state_of(request)
    if state.admin_openapi is None:
        state.admin_openapi = orjson.dumps(document(state.admin_routes))
    return Response(state.admin_openapi, media_type="application/json")


@router.get("/projects/{project}/envs/{env}/openapi.json")
async def tenant_openapi(
    project: str,
    env: str,
    request: Request,
    rt: RuntimeDep,
    _: ActorDep,
    roles: str | None = Query(
        default=None,
        description="Comma-separated roles of the caller to describe; default: `authenticated`, "
        "`public` and every role the release names",
    ),
) -> Response:
    role_set = None if roles is None else frozenset(r for r in roles.split(",") if r)
    doc = await releases.openapi(rt, project, env, role_set)
    return serve(doc, request.headers.get("if-none-match"))


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The admin routes' document, completed as the module docstring says."""
    doc = get_openapi(
        title="Santokit Bridge admin API",
        version="1",
        openapi_version="3.1.0",
        description="Operators register and run tenants (docs/admin.md).",
        routes=routes,
        servers=[{"url": "/"}],
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    components["responses"] = {
        f"Error{status}": {
            "description": ADMIN_TEXT.get(status, ERROR_TEXT[status]),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in ("400", "401", "403", "404", "409", "413", "503", "504")
    }
    components["securitySchemes"] = {
        "adminToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "A global admin token (STK_ADMIN_TOKENS) or a scoped one "
            "(POST /admin/v1/tokens); docs/security.md",
        }
    }
    doc["security"] = [{"adminToken": []}]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            answers.pop("422", None)
            statuses = {"400", "401", "403", "404", "503"}
            key = (method, path.removeprefix(PREFIX))
            if key in CONFLICTS:
                statuses.add("409")
            if key in TIMEOUTS:
                statuses.add("504")
            if "requestBody" in operation:
                statuses.add("413")
            for status in sorted(statuses):
                answers[status] = {"$ref": f"#/components/responses/Error{status}"}
            for answer in answers.values():
                content = answer.get("content", {}).get("application/json")
                if content is not None and content.get("schema") == {}:
                    # the tenant document's route: any JSON object
                    content["schema"] = {"type": "object"}
    return doc
