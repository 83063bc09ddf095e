"""Outermost ASGI layer: request id, the cheap header checks (`bridge.guard`), body limit and
deadline, access log line, and the one place an unexpected exception becomes the 500 envelope and
a logged traceback (for `/call` and FastAPI's routes alike).

Written as plain ASGI (not BaseHTTPMiddleware) because it wraps every request on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.context import current_request, header, header_map
from bridge.cors import Cors
from bridge.errors import envelope, from_stk
from bridge.guard import HeaderLimits, screen
from bridge.logs import access_line
from bridge.state import split_base
from tenancy.calls import RequestState
from tenancy.errors import as_unavailable
from tenancy.ids import REQUEST_ID, new_ulid
from tenancy.limits import RateState

if TYPE_CHECKING:  # loaded only when tracing is on (`bridge/tracing.py`)
    from bridge.tracing import RequestTracer

log = logging.getLogger("stk.errors")


class BodyTooLarge(HTTPException):
    """An HTTPException, so a framework that wraps body-read errors (FastAPI: 400) re-raises it."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


class BodyTooSlow(HTTPException):
    """The body did not arrive within `STK_BODY_TIMEOUT_SECONDS`: 408, and the connection closes."""

    def __init__(self) -> None:
        super().__init__(408, "Request body not received in time")


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        plain: Mapping[str, ASGIApp],
        max_body_bytes: int,
        limits: HeaderLimits,
        body_timeout: float,
        cors: Cors,
        observe: Callable[[RequestState, str, int, float, int, int], None] | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self.app = app
        self.plain = (
            plain  # `/call`, `/auth/*`...: dispatched here, no layer between (`bridge.app`)
        )
        self.max_body = max_body_bytes
        self.limits = limits
        self.body_timeout = body_timeout
        self.cors = cors
        self.observe = observe
        self.tracer = tracer  # None: tracing off, no work per request (`docs/operations.md`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Under `stk-bridge serve`, the protocol (`bridge.guard`) has counted the headers and
        # times the body (it marks a late one); under any other server, this layer does both.
        mark = (scope.get("extensions") or {}).get("stk.read_deadline")
        span = self.tracer.start(scope) if self.tracer is not None else None
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and REQUEST_ID.fullmatch(incoming) else new_ulid()
        req = RequestState(request_id)
        scope["stk"] = req
        req.base, path = split_base(scope["path"])
        if req.base is not None:  # the routes below see the path under the base URL
            scope["path"], scope["raw_path"] = path, path.encode()
        context = current_request.set(req)
        status = 500
        response_started = False
        rid_header = (b"x-request-id", request_id.encode())
        index = header_map(scope)
        refusal = screen(scope["headers"], index, self.limits, counted=mark is not None)
        has_origin = b"origin" in index
        received = sent = 0  # body bytes, for usage metering (`tenancy/usage.py`)

        async def send_wrapper(message: Message) -> None:
            """Every answer, whichever layer wrote it, gets the request id and its CORS headers
            (judged only for headers that passed the screen)."""
            nonlocal status, response_started, sent
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [*message.get("headers", []), rid_header]
                if has_origin:  # only a browser's request gets CORS headers
                    headers += await self.cors.headers(scope, judge=refusal is None)
                if req.rate is not None:
                    headers += rate_headers(req.rate)
                message["headers"] = headers
            else:
                sent += len(message.get("body", b""))
            await send(message)

        try:
            if refusal is not None:
                await envelope(refusal.status, refusal.message, request_id)(
                    scope, receive, send_wrapper
                )
                return
            length = header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                status = 413 if length.isdigit() else 400
                message = "Request body too large" if status == 413 else "Invalid Content-Length"
                await envelope(status, message, request_id)(scope, receive, send_wrapper)
                return
            body_done = False
            deadline = None if mark is not None else self._deadline()

            async def limited_receive() -> Message:
                nonlocal received, body_done
                if body_done:  # after the body: a wait for the disconnect, never bounded
                    return await receive()
                if deadline is None:
                    message = await receive()
                    if mark:
                        raise BodyTooSlow
                else:
                    try:
                        async with asyncio.timeout_at(deadline):
                            message = await receive()
                    except TimeoutError:
                        raise BodyTooSlow from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge
                    body_done = not message.get("more_body", False)
                return message

            app = self.plain.get(scope["path"], self.app)
            await app(scope, limited_receive, send_wrapper)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if not response_started:
                # The rest of the body is never read: the connection cannot be reused.
                headers = {"connection": "close"}
                await envelope(exc.status_code, exc.detail, request_id, headers=headers)(
                    scope, receive, send_wrapper
                )
        except Exception as exc:
            # A dependency outage that escaped as a raw driver error is a 503, not a bug.
            unavailable = as_unavailable(exc)
            if unavailable is None:
                log.exception("unhandled error")
            if not response_started:
                answer = (
                    envelope(500, "Internal error", request_id)
                    if unavailable is None
                    else from_stk(unavailable, request_id)
                )
                await answer(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            _log(req, scope, status, elapsed)
            if span is not None:
                span.end(_route(req, scope), status, req.project, req.env, request_id)
            if self.observe is not None:
                self.observe(req, scope.get("path", ""), status, elapsed, received, sent)
            current_request.reset(context)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.body_timeout


def rate_headers(rate: RateState) -> list[tuple[bytes, bytes]]:
    """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): one item per
    limit that counted this request (`docs/api.md`): the policy header as the caller's `Buckets`
    hold it, the counts filled into their template (one `%` for every limit)."""
    buckets, counts, _ = rate
    return [buckets.policy, (b"ratelimit", buckets.current % counts)]


def _route(req: RequestState, scope: Scope) -> str:
    """The route template of a `/call` (`db/notes/select`), else the URL path."""
    return req.route.template if req.route is not None else str(scope.get("path", ""))


def _log(req: RequestState, scope: Scope, status: int, elapsed: float) -> None:
    fields: dict[str, Any] = {
        "requestId": req.request_id,
        "project": req.project,
        "env": req.env,
        "release": req.release_id,
        "route": _route(req, scope),
        "status": status,
        "durationMs": round(elapsed * 1000, 2),
        "authType": req.auth_type,
    }
    access_line(scope.get("method", ""), fields)
