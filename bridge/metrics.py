"""Prometheus metrics (`docs/operations.md`). No tenant label unless STK_METRICS_TENANT_LABEL=true:
tenant ids are unbounded and would explode the series count of a large fleet.

Request metrics are counted per request: in plain integers, moved into the client's metrics by
`sync`, in a single process; straight into the client's metrics under several workers (a scrape
is answered by any of them). Everything the core already counts (pools, breakers, cache events,
invalidations) and the process's own figures are copied into metrics by `sync` too, never on the
request path: at scrape time, and every `SYNC_SECONDS` under several workers.

With `serve --workers N` the CLI sets `PROMETHEUS_MULTIPROC_DIR` before the workers start
(`bridge/cli.py`): each worker writes its series to files there and a scrape, whichever worker
answers it, reads them all (prometheus-client's multiprocess mode). Counters sum over workers,
dead ones included; gauges sum over live workers (`livesum`).
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.process_collector import ProcessCollector
from starlette.responses import Response

from tenancy.calls import RequestState
from tenancy.runtime import Runtime

# `<counter>_created` series double the count for a timestamp nobody graphs (and expose as
# gauges in the text format).
disable_created_metrics()  # type: ignore[no-untyped-call]
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)  # request seconds
SYNC_SECONDS = 5.0  # how stale another worker's core gauges may be in a scrape
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self, tenant_label: bool) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_DIR))
        self.registry = CollectorRegistry()
        # Per label set, its children (looked up once: `labels()` costs more than the increment
        # itself) and, in a single process, what was served since the last sync.
        self._tallies: dict[tuple[str, int, str | None], _Tally] = {}
        self.observe = self._observe_now if self.multiprocess else self._tally
        self._seen: dict[tuple[str, ...], float] = {}  # the core's counts already added
        self.tenant_label = tenant_label
        reg = self.registry
        labels = ["route_kind", "status", *(["project"] if tenant_label else [])]
        self.requests = Counter("stk_requests", "Requests served", labels, registry=reg)
        self.duration = Histogram(
            "stk_request_duration_seconds",
            "Request duration",
            ["route_kind"],
            registry=reg,
            buckets=BUCKETS,
        )
        self.pools_open = _gauge("stk_pools_open", "Open tenant pools", [], reg)
        self.connections = _gauge("stk_pool_connections", "Open tenant connections", ["state"], reg)
        self.breakers = _gauge(
            "stk_pool_breakers", "Open tenant pools by circuit breaker state", ["state"], reg
        )
        self.storage_clients = _gauge(
            "stk_storage_clients_open", "Open clients to tenants' object stores", [], reg
        )
        self.cache_events = Counter(
            "stk_tenant_cache_events",
            "Tenant cache lookups by result (stale: a miss answered with a stale value)",
            ["cache", "result"],
            registry=reg,
        )
        self.invalidations = Counter("stk_invalidations", "Invalidations applied", registry=reg)
        self.dependency_stale = Counter(
            "stk_dependency_stale",
            "Answers served from a stale cached value because the dependency failed",
            ["dependency"],
            registry=reg,
        )
        self.dependency_breakers = _gauge(
            "stk_dependency_breaker_open",
            "1 while the dependency's circuit breaker is open or half-open",
            ["dependency"],
            reg,
        )
        if self.multiprocess:
            # The default process collector sees only the worker answering the scrape: each
            # worker adds its own figures instead, summed over workers.
            self.cpu = Counter(
                "process_cpu_seconds", "CPU time of the workers (user + system)", registry=reg
            )
            self.memory = _gauge(
                "process_resident_memory_bytes", "Resident memory of the workers", [], reg
            )
            self.fds = _gauge("process_open_fds", "Open file descriptors of the workers", [], reg)
            self._process = ProcessCollector(registry=None)
        else:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                reg.register(collector)

    def _tally_of(self, req: RequestState, path: str, status: int) -> _Tally:
        kind = route_kind(req, path)
        key = (kind, status, req.project if self.tenant_label else None)
        tally = self._tallies.get(key)
        if tally is None:
            labels = [kind, str(status), *([req.project or ""] if self.tenant_label else [])]
            tally = self._tallies[key] = _Tally(
                self.requests.labels(*labels), self.duration.labels(kind)
            )
        return tally

    def _tally(self, req: RequestState, path: str, status: int, seconds: float) -> None:
        """One request, counted in plain integers until the next sync (a scrape): the client's
        counter and histogram take a lock and a dozen calls per request (`docs/decisions.md`,
        hot path)."""
        tally = self._tally_of(req, path, status)
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(BUCKETS, seconds)] += 1

    def _observe_now(self, req: RequestState, path: str, status: int, seconds: float) -> None:
        """Under several workers: straight into this worker's files, so a scrape answered by
        another worker counts this request already."""
        tally = self._tally_of(req, path, status)
        tally.counter.inc()
        tally.histogram.observe(seconds)

    def _add(self, counter: Counter, key: tuple[str, ...], total: float) -> None:
        """Bring `counter{key}` to the core's running `total` (it only grows in a process)."""
        seen = (str(id(counter)), *key)
        child = counter.labels(*key) if key else counter  # exposed from 0, before any event
        delta = total - self._seen.get(seen, 0)
        if delta > 0:
            child.inc(delta)
            self._seen[seen] = total

    def sync(self, rt: Runtime) -> None:
        """Copy the core's counts and this process's figures into the metrics."""
        for tally in self._tallies.values():
            tally.flush()
        pools = rt.pools
        self.pools_open.set(pools.open_pools)
        self.connections.labels("in_use").set(pools.connections_in_use)
        self.connections.labels("idle").set(pools.open_connections - pools.connections_in_use)
        for state, count in pools.breaker_states().items():
            self.breakers.labels(state).set(count)
        self.storage_clients.set(len(rt.storage.stores))
        for cache in rt.caches:
            self._add(self.cache_events, (cache.name, "hit"), cache.hits)
            self._add(self.cache_events, (cache.name, "miss"), cache.misses)
            self._add(self.cache_events, (cache.name, "stale"), cache.stale)
        self._add(self.invalidations, (), rt.bus.received)
        for dependency in rt.dependencies:
            name = dependency.dependency
            self._add(self.dependency_stale, (name,), dependency.served)
            self.dependency_breakers.labels(name).set(int(dependency.breaker.state != "closed"))
        if self.multiprocess:
            for family in self._process.collect():
                value = family.samples[0].value if family.samples else 0.0
                if family.name == "process_cpu_seconds":
                    self._add(self.cpu, (), value)
                elif family.name == "process_resident_memory_bytes":
                    self.memory.set(value)
                elif family.name == "process_open_fds":
                    self.fds.set(value)

    def render(self, rt: Runtime) -> bytes:
        self.sync(rt)
        if not self.multiprocess:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
        every_worker.register(PLATFORM_COLLECTOR)  # the same in every worker
        return generate_latest(every_worker)

    @asynccontextmanager
    async def running(self, rt: Runtime) -> AsyncIterator[None]:
        """While the app runs: under several workers, sync every `SYNC_SECONDS` (a scrape reads
        every worker's files, not only its own); at exit, drop this worker's live gauges."""
        if not self.multiprocess:
            yield
            return

        async def every_few_seconds() -> None:
            while True:
                self.sync(rt)
                await asyncio.sleep(SYNC_SECONDS)

        task = asyncio.create_task(every_few_seconds())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _Tally:
    """A label set's children and the requests served since its last flush."""

    __slots__ = ("buckets", "count", "counter", "histogram", "seconds")

    def __init__(self, counter: Any, histogram: Any) -> None:
        self.counter = counter
        self.histogram = histogram
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf

    def flush(self) -> None:
        """Into the client's values: what `observe` would have added, request by request. Its
        histogram has no bulk update, so this adds to the per-bucket values `observe` adds to
        (`tests/test_metrics.py` checks the exposition against `observe`'s)."""
        if not self.count:
            return
        self.counter.inc(self.count)
        self.histogram._sum.inc(self.seconds)
        for index, count in enumerate(self.buckets):
            if count:
                self.histogram._buckets[index].inc(count)
                self.buckets[index] = 0
        self.count, self.seconds = 0, 0.0


def _gauge(name: str, documentation: str, labels: list[str], registry: CollectorRegistry) -> Gauge:
    """A gauge summed over live workers under multiprocess mode (a plain one otherwise)."""
    return Gauge(name, documentation, labels, registry=registry, multiprocess_mode="livesum")


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
