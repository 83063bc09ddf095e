"""`GET /openapi.json`: the tenant's own API description, admitted exactly like `/call`; the core
builds and caches it (`tenancy.openapi`), this route only serves it (`docs/api.md` "OpenAPI")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from bridge.context import info
from bridge.state import state_of
from tenancy.calls import admit
from tenancy.openapi import Document, document

router = APIRouter()


@router.get("/openapi.json")
async def tenant_openapi(request: Request) -> Response:
    state = state_of(request)
    address = state.client_address(request.scope)
    admission = await admit(state.rt, state.hints(request.scope), info(request.scope), address)
    doc = document(
        admission.release, admission.principal.roles, max_rows=state.settings.select_max_rows
    )
    return serve(doc, request.headers.get("if-none-match"))


def serve(doc: Document, if_none_match: str | None) -> Response:
    """The document, or 304 when the client's copy is current (RFC 9110 weak comparison)."""
    headers = {
        "ETag": doc.etag,
        # Per caller (its roles), so never shared; revalidated on every use.
        "Cache-Control": "private, no-cache",
        "Vary": "Authorization, X-Santokit-API-Key, X-Santokit-Project, X-Santokit-Env",
    }
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        if "*" in tags or doc.etag in tags:
            return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type="application/json", headers=headers)
