"""`POST /call`: the JSON body here, then `tenancy.calls` (route → admission → call); the answer is
only encoded here (`docs/api.md`).

Plain ASGI, reached by `bridge.app`'s path switch ahead of FastAPI (`docs/decisions.md`, hot path).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from bridge.context import info
from bridge.cors import Cors
from bridge.errors import envelope, from_stk
from bridge.routes.body import read_body
from bridge.state import AppState
from tenancy.calls import Params, admit, call, parse_route
from tenancy.encode import dumps
from tenancy.errors import BadRequest, StkError

JSON_TYPE = (b"content-type", b"application/json")
MAX_DEPTH = 64
FIELDS = frozenset({"path", "params"})


class CallEndpoint:
    """The whole HTTP side of `/call` in one layer (`docs/decisions.md`, hot path): the data-plane
    gate (`Cors.gate`: preflight, JSON only), the body, the pipeline, the answer."""

    def __init__(self, state: AppState, cors: Cors) -> None:
        self.state = state
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = info(scope)
        refused = await self.cors.gate(scope)
        if refused is not None:
            await refused(scope, receive, send)
            return
        if scope["method"] != "POST":
            response = envelope(405, "Method not allowed", req.request_id)
            response.headers["allow"] = "POST"
            await response(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            path, params = parse_body(body)
            req.route = route = parse_route(path)
            rt = self.state.rt
            address = self.state.client_address(scope)
            admission = await admit(rt, self.state.hints(scope), req, address)
            data = await call(rt, admission, route, params, address)
            answer = dumps({"data": data})
        except StkError as exc:
            await from_stk(exc, req.request_id)(scope, receive, send)
            return
        headers = [JSON_TYPE, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def parse_body(body: bytes) -> tuple[str, Params]:
    """`{"path": str, "params"?: object}` and nothing else (400)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Body must be valid JSON (UTF-8)") from None
    if not isinstance(payload, dict):
        raise BadRequest("Body must be a JSON object")
    # Counting brackets is a cheap upper bound; only deep-looking bodies are walked.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth(payload) > MAX_DEPTH:
        raise BadRequest(f"JSON nesting deeper than {MAX_DEPTH}")
    if not payload.keys() <= FIELDS:
        raise BadRequest(f"Unknown field: {sorted(payload.keys() - FIELDS)[0]}")
    path = payload.get("path")
    if not isinstance(path, str):
        raise BadRequest("path must be a string")
    params = payload.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest("params must be an object")
    return path, params


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest
