"""Prometheus metrics (`operations.md`). No tenant label unless STK_METRICS_TENANT_LABEL=true:
tenant ids are unbounded and would explode the series count of a large fleet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

from tenancy.calls import RequestState
from tenancy.runtime import Runtime


class Metrics:
    def __init__(self, tenant_label: bool) -> None:
        self.registry = CollectorRegistry()
        # Labelled children, looked up once: `labels()` costs more than the increment itself.
        self._children: dict[tuple[str, int, str | None], tuple[Any, Any]] = {}
        self.tenant_label = tenant_label
        labels = ["route_kind", "status", *(["project"] if tenant_label else [])]
        self.requests = Counter(
            "stk_requests_total", "Requests served", labels, registry=self.registry
        )
        self.duration = Histogram(
            "stk_request_duration_seconds",
            "Request duration",
            ["route_kind"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.pools_open = Gauge("stk_pools_open", "Open tenant pools", registry=self.registry)
        self.pool_connections = Gauge(
            "stk_pool_connections", "Tenant connections", ["state"], registry=self.registry
        )
        self.cache_events = Gauge(
            "stk_tenant_cache_events_total",
            "Tenant cache lookups",
            ["cache", "result"],
            registry=self.registry,
        )
        self.invalidations = Gauge(
            "stk_invalidations_total", "Invalidations applied", registry=self.registry
        )

    def observe(self, req: RequestState, path: str, status: int, seconds: float) -> None:
        kind = route_kind(req, path)
        key = (kind, status, req.project if self.tenant_label else None)
        children = self._children.get(key)
        if children is None:
            labels = [kind, str(status), *([req.project or ""] if self.tenant_label else [])]
            children = (self.requests.labels(*labels), self.duration.labels(kind))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self, rt: Runtime) -> bytes:
        """Gauges over the core's own counters are read at scrape time, not per request."""
        self.pools_open.set(rt.pools.open_pools)
        in_use = rt.pools.connections_in_use
        self.pool_connections.labels("in_use").set(in_use)
        self.pool_connections.labels("idle").set(rt.pools.open_connections - in_use)
        for cache in rt.directory.caches:
            self.cache_events.labels(cache.name, "hit").set(cache.hits)
            self.cache_events.labels(cache.name, "miss").set(cache.misses)
        self.invalidations.set(rt.bus.received)
        return generate_latest(self.registry)


def route_kind(req: RequestState, path: str) -> str:
    if req.route is not None:
        return req.route.kind
    for prefix, kind in (("/admin/", "admin"), ("/auth/", "auth"), ("/call", "call")):
        if path.startswith(prefix):
            return kind
    return "other"


def router(get: Callable[[], tuple[Metrics, Runtime]]) -> APIRouter:
    routes = APIRouter()

    @routes.get("/metrics")
    async def metrics() -> Response:
        found, rt = get()
        return Response(found.render(rt), media_type=CONTENT_TYPE_LATEST)

    return routes
