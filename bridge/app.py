"""App factory: wires the core (`tenancy.runtime`) to the HTTP routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import Receive, Scope, Send

from bridge import errors
from bridge.cors import CorsMiddleware
from bridge.metrics import Metrics
from bridge.metrics import router as metrics_router
from bridge.middleware import RequestMiddleware
from bridge.routes import auth, health
from bridge.routes.admin import keys, projects, releases, secrets, signing
from bridge.routes.call import CallEndpoint
from bridge.state import AppState
from tenancy.keyring import Keyring
from tenancy.runtime import Runtime
from tenancy.settings import Settings


class BridgeApp(FastAPI):
    """FastAPI for every route but `POST /call`, which is served as plain ASGI under the same
    request middleware: on the hot path, FastAPI's own layers (error middleware, routing,
    request objects, dependency solving) cost more CPU than the rest of the pipeline."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.call_stack = RequestMiddleware(
            CorsMiddleware(CallEndpoint()),
            max_body_bytes=settings.max_body_bytes,
            observe=metrics.observe,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/call":
            scope["app"] = self
            await self.call_stack(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/admin/v1")
    for module in (projects, secrets, releases, keys, signing):
        router.include_router(module.router)
    return router


def create_app(
    settings: Settings,
    keyring: Keyring,
    admin_tokens: list[str],
    *,
    migrate: bool | None = None,
) -> FastAPI:
    """`migrate` defaults to `settings.auto_migrate` (tests and `dev` always migrate)."""
    metrics = Metrics(settings.metrics_tenant_label)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        run_migrations = settings.auto_migrate if migrate is None else migrate
        rt = await Runtime.start(settings, keyring, migrate_schema=run_migrations)
        app.state.stk = AppState(rt, tuple(t.encode() for t in admin_tokens))
        try:
            yield
        finally:
            await rt.close()

    app = BridgeApp(
        settings,
        metrics,
        title="Santokit Bridge",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # We export our own Prometheus metrics; FastAPI's OpenTelemetry hooks would only add a
        # provider lookup to every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    app.include_router(metrics_router(lambda request: (metrics, request.app.state.stk.rt)))
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(admin_router())
    app.add_middleware(CorsMiddleware)  # inside RequestMiddleware: it reads the resolved tenant
    app.add_middleware(
        RequestMiddleware,
        max_body_bytes=settings.max_body_bytes,
        observe=metrics.observe,
    )
    return app
