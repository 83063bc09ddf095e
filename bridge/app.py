"""App factory: composes the ASGI app and wires the core (`tenancy.runtime`) to the HTTP routes.

    RequestMiddleware ─► CallEndpoint                 (`/call`, its CORS gate inside)
                      ├► AuthEndpoint                 (`/auth/*`, JWKS, the same)
                      └► CorsMiddleware → FastAPI    (health, metrics, openapi, admin)

(each behind `InternalGate` when `STK_INTERNAL_PORT` is set). Each piece is built once and they
share one `AppState`. `/call` stays off FastAPI's routing, in one layer under the request
middleware: on the hot path, FastAPI's own layers (error middleware, routing, request objects,
dependency solving) cost more CPU than the rest of the pipeline, and every layer a request
passes is also passed again each time it resumes (`docs/decisions.md`, hot path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import errors, logs
from bridge.context import info
from bridge.cors import Cors, CorsMiddleware
from bridge.guard import HeaderLimits
from bridge.metrics import Metrics, route_kind
from bridge.metrics import router as metrics_router
from bridge.middleware import RequestMiddleware
from bridge.routes import auth, health, openapi
from bridge.routes.admin import keys, projects, releases, secrets, signing, tokens, usage
from bridge.routes.admin import openapi as admin_openapi
from bridge.routes.auth import AuthEndpoint
from bridge.routes.call import CallEndpoint
from bridge.state import AppState
from tenancy.calls import RequestState
from tenancy.keyring import Keyring
from tenancy.runtime import Runtime
from tenancy.settings import Settings

if TYPE_CHECKING:  # the SDK is imported only when tracing is on (`_tracer`)
    from opentelemetry.sdk.trace.export import SpanExporter

    from bridge.tracing import RequestTracer


class InternalGate:
    """With `STK_INTERNAL_PORT` (`docs/operations.md`), `/metrics` and `/readyz` answer only on
    that listener, and it answers nothing else but `/healthz`: the public port no longer exposes
    them. Which listener a request came in on is the ASGI `server` of its socket."""

    INTERNAL = frozenset({"/metrics", "/readyz"})

    def __init__(self, app: ASGIApp, internal_port: int) -> None:
        self.app = app
        self.internal_port = internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            internal = server is not None and server[1] == self.internal_port
            path = scope["path"]
            if (path in self.INTERNAL) != internal and path != "/healthz":
                request_id = info(scope).request_id
                await errors.envelope(404, "Not found", request_id)(scope, receive, send)
                return
        await self.app(scope, receive, send)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
Observer = Callable[[RequestState, str, int, float, int, int], None]


class App:
    """The composed ASGI app, with what tests and embedders need: its lifespan (run by the server
    through FastAPI, or by hand with `async with app.lifespan()`) and the runtime it started."""

    def __init__(self, stack: ASGIApp, api: FastAPI, state: AppState, lifespan: Lifespan) -> None:
        self.stack = stack  # what a server runs (`bridge.asgi`): one frame fewer than this object
        self._lifespan = lifespan
        self.api = api
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stack(scope, receive, send)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        return self._lifespan(self.api)

    @property
    def runtime(self) -> Runtime:
        return self.state.rt


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/admin/v1")
    for module in (projects, secrets, releases, keys, signing, tokens, usage, admin_openapi):
        router.include_router(module.router)
    return router


def _observer(metrics: Metrics, state: AppState) -> Observer:
    """After each answer: the metrics, and the usage of the tenant it was admitted for (requests
    refused before a tenant is resolved are nobody's usage: anyone could send them)."""

    def observe(
        req: RequestState, path: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        metrics.observe(req, path, status, seconds)
        if req.resolved is not None:
            tenant = req.resolved.tenant
            usage = state.rt.usage
            usage.request(tenant, route_kind(req, path), status, received, sent)
            if status == 200 and path == "/auth/login":
                usage.add(tenant, "logins")

    return observe


def _tracer(settings: Settings, exporter: SpanExporter | None) -> RequestTracer | None:
    """None when tracing is off: then the SDK is never imported (`docs/operations.md`)."""
    if settings.tracing == "off":
        return None
    from bridge.tracing import RequestTracer, tracer_provider

    return RequestTracer(tracer_provider(settings.tracing, exporter))


def create_app(
    settings: Settings,
    keyring: Keyring,
    admin_tokens: list[str],
    *,
    migrate: bool | None = None,
    span_exporter: SpanExporter | None = None,
) -> App:
    """`migrate` defaults to `settings.auto_migrate` (tests and `dev` always migrate);
    `span_exporter`, with `STK_TRACING` on, replaces the mode's exporter (`bridge/tracing.py`)."""
    metrics = Metrics(settings.metrics_tenant_label)
    tracer = _tracer(settings, span_exporter)
    state = AppState(settings, tuple(t.encode() for t in admin_tokens))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        run_migrations = settings.auto_migrate if migrate is None else migrate
        state.rt = await Runtime.start(settings, keyring, migrate_schema=run_migrations)
        try:
            async with metrics.running(state.rt):
                yield
        finally:
            await state.rt.close()
            if tracer is not None:
                tracer.shutdown()
            logs.flush()  # the batched access lines (`docs/operations.md`)

    api = FastAPI(
        title="Santokit Bridge",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # We export our own Prometheus metrics; FastAPI's OpenTelemetry hooks would only add a
        # provider lookup to every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api.state.stk = state
    errors.install(api)
    api.include_router(metrics_router(lambda: (metrics, state.rt)))
    api.include_router(health.router)
    api.include_router(openapi.router)
    admin = admin_router()
    state.admin_routes = admin.routes
    api.include_router(admin)
    cors = Cors(state)
    # The data plane's own routes are plain ASGI (`/call`, `/auth/*`, JWKS); the rest FastAPI.
    plain: dict[str, ASGIApp] = {"/call": CallEndpoint(state, cors)}
    plain |= dict.fromkeys(auth.ROUTES, AuthEndpoint(state, cors))
    other: ASGIApp = CorsMiddleware(api, cors)
    if settings.internal_port is not None:
        port = settings.internal_port
        plain = {path: InternalGate(app, port) for path, app in plain.items()}
        other = InternalGate(other, port)
    stack = RequestMiddleware(
        other,
        plain,
        max_body_bytes=settings.max_body_bytes,
        limits=HeaderLimits.of(settings),
        body_timeout=settings.body_timeout_seconds,
        cors=cors,
        observe=_observer(metrics, state),
        tracer=tracer,
    )
    return App(stack, api, state, lifespan)
