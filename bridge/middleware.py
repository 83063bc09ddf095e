"""Outermost ASGI layer: request id, body limit, access log line, and the one place an unexpected
exception becomes the 500 envelope and a logged traceback (for `/call` and FastAPI's routes alike).

Written as plain ASGI (not BaseHTTPMiddleware) because it wraps every request on the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.context import current_request
from bridge.errors import envelope
from bridge.logs import access_line
from tenancy.calls import RequestState
from tenancy.ids import REQUEST_ID, new_ulid
from tenancy.limits import WINDOW_SECONDS, RateState

log = logging.getLogger("stk.errors")


class BodyTooLarge(HTTPException):
    """An HTTPException, so a framework that wraps body-read errors (FastAPI: 400) re-raises it."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        observe: Callable[[RequestState, str, int, float], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and REQUEST_ID.fullmatch(incoming) else new_ulid()
        req = RequestState(request_id)
        scope["stk"] = req
        context = current_request.set(req)
        status = 500
        response_started = False
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
                if req.rate is not None:
                    message["headers"].extend(rate_headers(req.rate))
            await send(message)

        length = _header(scope, b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                status = 413 if length.isdigit() else 400
                message = "Request body too large" if status == 413 else "Invalid Content-Length"
                await envelope(status, message, request_id)(scope, receive, send_wrapper)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge
                return message

            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge:
            if not response_started:
                await envelope(413, "Request body too large", request_id)(
                    scope, receive, send_wrapper
                )
        except Exception:
            log.exception("unhandled error")
            if not response_started:
                await envelope(500, "Internal error", request_id)(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            _log(req, scope, status, elapsed)
            if self.observe is not None:
                self.observe(req, scope.get("path", ""), status, elapsed)
            current_request.reset(context)


def rate_headers(rate: RateState) -> list[tuple[bytes, bytes]]:
    """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): one item per
    limit that counted this request (`docs/api.md`)."""
    policy = ", ".join(f'"{r.name}";q={r.quota};w={WINDOW_SECONDS}' for r in rate.results)
    current = ", ".join(f'"{r.name}";r={r.remaining};t={r.reset}' for r in rate.results)
    return [(b"ratelimit-policy", policy.encode()), (b"ratelimit", current.encode())]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _log(req: RequestState, scope: Scope, status: int, elapsed: float) -> None:
    fields: dict[str, Any] = {
        "requestId": req.request_id,
        "project": req.project,
        "env": req.env,
        "release": req.release_id,
        "route": req.route.template if req.route is not None else scope.get("path"),
        "status": status,
        "durationMs": round(elapsed * 1000, 2),
        "authType": req.auth_type,
    }
    access_line(scope.get("method", ""), fields)
