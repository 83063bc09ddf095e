"""`POST /call`: body → route → tenant → release → limits → route handler (`api.md` order).

Plain ASGI, dispatched by `bridge.app.BridgeApp` ahead of FastAPI (see there for why). Errors
become the envelope here, exactly as `bridge.errors` renders them.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from bridge.context import RequestInfo, info
from bridge.errors import envelope, from_stk
from bridge.execute.body import parse_body, parse_route
from bridge.execute.crud import run_crud
from bridge.execute.logics import run_logic
from bridge.state import AppState, raw_headers
from tenancy.encode import dumps
from tenancy.errors import NotFound, StkError
from tenancy.resolution import resolve

log = logging.getLogger("stk.call")
JSON_TYPE = (b"content-type", b"application/json")


class CallEndpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = info(scope)
        if scope["method"] != "POST":
            response = envelope(405, "Method not allowed", req.request_id)
            response.headers["allow"] = "POST"
        else:
            body = await _read_body(receive)
            try:
                answer = await self.handle(scope, req, body)
            except StkError as exc:
                response = from_stk(exc, req.request_id)
            except Exception:
                log.exception("unhandled error")
                response = envelope(500, "Internal error", req.request_id)
            else:
                headers = [JSON_TYPE, (b"content-length", str(len(answer)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": answer})
                return
        await response(scope, receive, send)

    async def handle(self, scope: Scope, req: RequestInfo, body: bytes) -> bytes:
        """The success body; errors are raised as `StkError`."""
        state: AppState = scope["app"].state.stk
        rt = state.rt
        path, params = parse_body(body)
        route = parse_route(path)
        req.route = route.template
        resolved = await resolve(
            state.hints(raw_headers(scope)), rt.directory, rt.settings.host_suffix
        )
        tenant = resolved.tenant
        req.project, req.env, req.auth_type = tenant.project, tenant.env, resolved.principal.type
        release = await rt.directory.release(tenant)
        req.release = release.id
        limits = resolved.project.limits
        await rt.limits.admit(tenant, limits)
        result: Any
        try:
            with rt.limits.slot(tenant, limits):
                if route.kind == "logics":
                    client = scope.get("client")
                    client_ip = client[0] if client else ""
                    result = await run_logic(rt, resolved, release, route.name, params, client_ip)
                elif route.kind == "db":
                    result = await run_crud(rt, resolved, release, route.name, route.op, params)
                else:
                    raise NotFound(f"Route kind '{route.kind}' is not available yet")
        except StkError as exc:
            if exc.status >= 500:
                # The envelope's message is already safe to show; operators need it in the log.
                log.warning("tenant request failed: %s", exc.message)
                rt.directory.record_error(tenant, exc.message)
            raise
        if resolved.principal.type == "api_key":
            rt.directory.touch_api_key(resolved.principal.sub)
        return dumps({"data": result})


async def _read_body(receive: Receive) -> bytes:
    """The whole body; the middleware's receive already enforces STK_MAX_BODY_BYTES."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
