"""`/metrics` (`docs/operations.md`): conventional names, process and runtime series, bounded
labels, and counts that stay right under `serve --workers N`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.bridge import Bridge
from support.processes import free_port, master_keys, start, stk_env, stop, wait_ready

UNITS = ("_seconds", "_bytes", "_fds", "_total", "_info")
# Gauges whose names carry no unit: they count things (pools, connections) or are a 0/1 state.
COUNTS = {
    "stk_pools_open",
    "stk_pool_connections",
    "stk_pool_breakers",
    "stk_storage_clients_open",
    "stk_dependency_breaker_open",
}


def parse(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    return {
        family.name: (family.type, [(s.name, s.labels, s.value) for s in family.samples])
        for family in text_string_to_metric_families(text)
    }


def requests_served(text: str, route_kind: str) -> float:
    _, samples = parse(text)["stk_requests"]
    return sum(v for name, labels, v in samples if labels["route_kind"] == route_kind)


async def test_names_types_and_labels_follow_the_conventions(bridge: Bridge) -> None:
    await bridge.client.get("/healthz")
    found = parse((await bridge.client.get("/metrics")).text)
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_info"):
        assert name in found, sorted(found)
    assert any(name.startswith("python_gc_") for name in found)
    assert {"stk_requests", "stk_pool_breakers", "stk_tenant_cache_events"} <= set(found)
    for name, (kind, samples) in found.items():
        sample_names = {sample[0] for sample in samples}
        if kind == "counter":
            assert all(s.endswith(("_total", "_created")) for s in sample_names), name
        if kind == "gauge":
            assert not name.endswith("_total"), f"gauge {name} looks like a counter"
        if name.startswith("stk_") and name not in COUNTS and kind != "counter":
            assert name.endswith(UNITS) or (kind == "histogram" and "_seconds" in name), name
        # Bounded cardinality: no label names a tenant, key or path unless opted in.
        for _, labels, _ in samples:
            assert not {"project", "env", "path", "key"} & set(labels), (name, labels)
    breakers = {labels["state"] for _, labels, _ in found["stk_pool_breakers"][1]}
    assert breakers == {"closed", "open", "half_open"}


@pytest.mark.slow
def test_counts_are_right_under_several_workers(tmp_path: Path) -> None:
    env = stk_env(data_dir=str(tmp_path / "data"), master_keys=master_keys())
    server = start(["serve", "--workers", "2"], env, tmp_path, free_port())
    try:
        wait_ready(server, timeout=120)  # each worker imports the whole app on a busy machine
        base = server.base
        # A new connection each time, so the kernel spreads them over both workers.
        for _ in range(40):
            assert httpx.get(f"{base}/healthz", headers={"Connection": "close"}).is_success
        scrapes = [httpx.get(f"{base}/metrics", headers={"Connection": "close"}) for _ in range(6)]
        served = [requests_served(r.text, "other") for r in scrapes]
        # The readiness polls of `serving` also count: at least 40 + every earlier scrape, and
        # each scrape sees exactly one more than the one before, whichever worker answers.
        assert served[0] >= 40
        assert served == [served[0] + i for i in range(6)], served
        found = parse(scrapes[-1].text)
        cpu = found["process_cpu_seconds"][1][0][2]
        assert cpu > 0
        assert found["process_resident_memory_bytes"][1][0][2] > 40_000_000  # two workers' worth
    finally:
        stop(server)


@pytest.mark.slow
def test_an_internal_port_keeps_metrics_and_readiness_off_the_public_one(tmp_path: Path) -> None:
    internal_port = free_port()
    env = stk_env(
        data_dir=str(tmp_path / "data"),
        master_keys=master_keys(),
        internal_port=str(internal_port),
    )
    server = start(["serve"], env, tmp_path, free_port())
    internal = f"http://127.0.0.1:{internal_port}"
    try:
        wait_ready(server, "/healthz", timeout=120)
        public = server.base
        for path in ("/metrics", "/readyz", "/readyz?project=shop"):
            hidden = httpx.get(public + path)
            assert hidden.status_code == 404, path
            assert hidden.json()["error"]["code"] == "NOT_FOUND"
        assert httpx.get(internal + "/metrics").status_code == 200
        assert httpx.get(internal + "/readyz").status_code == 200
        assert httpx.get(internal + "/readyz?project=shop").status_code == 503  # no such tenant
        for path in ("/healthz",):
            assert httpx.get(public + path).status_code == 200
            assert httpx.get(internal + path).status_code == 200
        call = {"path": "logics/public/stats"}
        assert httpx.post(internal + "/call", json=call).status_code == 404  # only probes here
        assert httpx.post(public + "/call", json=call).status_code == 400  # served (no project)
        assert httpx.get(internal + "/admin/v1/projects").status_code == 404
    finally:
        stop(server)


async def test_request_counts_kept_between_scrapes_expose_as_observed(bridge: Bridge) -> None:
    """In a single process, requests are counted in plain integers until a scrape: the
    exposition equals what the client's own `inc` and `observe` give for the same requests,
    boundaries, +Inf and a second scrape included (it guards the bulk update of the client's
    histogram values, `bridge.metrics._Tally.flush`)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from bridge.metrics import BUCKETS, Metrics
    from tenancy.calls import RequestState

    metrics = Metrics(tenant_label=False)
    reference = CollectorRegistry()
    counted = Counter("stk_requests", "", ["route_kind", "status"], registry=reference)
    timed = Histogram(
        "stk_request_duration_seconds", "", ["route_kind"], registry=reference, buckets=BUCKETS
    )
    for seconds in (0.0005, 0.001, 0.0011, 0.0025, 0.3, 10, 11, 42.5):
        metrics.observe(RequestState("r"), "/nowhere", 404, seconds)
        counted.labels("other", "404").inc()
        timed.labels("other").observe(seconds)

    def ours() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = parse(metrics.render(bridge.rt).decode())
        return {
            (name, tuple(sorted(labels.items()))): value
            for family in ("stk_requests", "stk_request_duration_seconds")
            for name, labels, value in found[family][1]
            if labels.get("route_kind") == "other" and labels.get("status", "404") == "404"
        }

    def expected() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (name, tuple(sorted(labels.items()))): value
            for family in ("stk_requests", "stk_request_duration_seconds")
            for name, labels, value in parse(generate_latest(reference).decode())[family][1]
        }

    assert ours() == expected()
    metrics.observe(RequestState("r"), "/nowhere", 404, 0.004)
    counted.labels("other", "404").inc()
    timed.labels("other").observe(0.004)
    assert ours() == expected()  # what the first scrape moved is not moved again
