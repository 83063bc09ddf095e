"""Prometheus metrics (`docs/operations.md`). No tenant label unless STK_METRICS_TENANT_LABEL=true:
tenant ids are unbounded and would explode the series count of a large fleet.

Request metrics are counted per request; everything the core already counts (pools, cache
events, invalidations) is read from it at scrape time by `CoreCollector`, so the request path
pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
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
        core = CollectorRegistry(auto_describe=False)
        core.register(CoreCollector(rt))
        return generate_latest(self.registry) + generate_latest(core)


class CoreCollector(Collector):
    """The core's own counters and gauges, read when scraped."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def collect(self) -> Iterator[Metric]:
        pools = self._rt.pools
        yield GaugeMetricFamily("stk_pools_open", "Open tenant pools", value=pools.open_pools)
        connections = GaugeMetricFamily(
            "stk_pool_connections", "Tenant connections", labels=["state"]
        )
        connections.add_metric(["in_use"], pools.connections_in_use)
        connections.add_metric(["idle"], pools.open_connections - pools.connections_in_use)
        yield connections
        yield GaugeMetricFamily(
            "stk_storage_clients_open",
            "Open clients to tenants' object stores",
            value=len(self._rt.storage.stores),
        )
        # Counter families take the name without `_total` and expose `<name>_total`.
        events = CounterMetricFamily(
            "stk_tenant_cache_events",
            "Tenant cache lookups by result (stale: a miss answered with a stale value)",
            labels=["cache", "result"],
        )
        for cache in self._rt.caches:
            events.add_metric([cache.name, "hit"], cache.hits)
            events.add_metric([cache.name, "miss"], cache.misses)
            events.add_metric([cache.name, "stale"], cache.stale)
        yield events
        yield CounterMetricFamily(
            "stk_invalidations", "Invalidations applied", value=self._rt.bus.received
        )
        stale = CounterMetricFamily(
            "stk_dependency_stale",
            "Answers served from a stale cached value because the dependency failed",
            labels=["dependency"],
        )
        breakers = GaugeMetricFamily(
            "stk_dependency_breaker_open",
            "1 while the dependency's circuit breaker is open or half-open",
            labels=["dependency"],
        )
        for dependency in self._rt.dependencies:
            stale.add_metric([dependency.dependency], dependency.served)
            breakers.add_metric([dependency.dependency], int(dependency.breaker.state != "closed"))
        yield stale
        yield breakers


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
