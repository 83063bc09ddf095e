"""The registry refused and blackholed under load, two replicas: warm tenants keep 100 % success
on both, every request bounded; cold tenants and the admin API answer 503 within the bound;
`/readyz` keeps warm replicas in; everything works again after recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.processes import Server, poll
from support.replicas import (
    BOUND_S,
    FAULT_SETTINGS,
    HOST_SUFFIX,
    Deployment,
    Target,
    deployment,
    load,
    warm,
)

pytestmark = pytest.mark.slow

WARM = ("alpha", "beta")


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(Path(tmp_path_factory.mktemp("registry-faults")), **FAULT_SETTINGS) as d:
        for project in (*WARM, "cold-refuse", "cold-blackhole"):
            d.add_tenant(project)
        yield d


def warm_targets(dep: Deployment) -> list[Target]:
    """Public and API-key traffic for each warm tenant on each replica."""
    targets = []
    for replica in dep.replicas:
        for project in WARM:
            key = dep.tenants[project].api_key
            targets.append(Target("warm", replica, project, "logics/public/stats"))
            summary = "logics/notebooks/summary"
            params = {"owner_id": "seed-alice"}
            targets.append(Target("warm-key", replica, project, summary, params, key))
    return targets


def call_cold(replica: Server, project: str) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    r = httpx.post(
        f"{replica.base}/call",
        json={"path": "logics/public/stats"},
        headers={"Host": f"{project}.{HOST_SUFFIX}"},
        timeout=30,
    )
    return r, time.monotonic() - began


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
def test_a_down_registry_leaves_warm_tenants_whole_and_answers_503_quickly(
    dep: Deployment, fault: str
) -> None:
    targets = warm_targets(dep)
    warm(targets)
    if fault == "refuse":
        dep.background.refuse(dep.registry)
    else:
        dep.background.blackhole(dep.registry)
    try:
        results = load(targets, seconds=5, concurrency=1)
        print(fault, results.summary())
        assert results.success_rate() == 1.0, results.summary()
        assert results.max_seconds() < BOUND_S, results.summary()

        # The cold tenant was registered through replica 0; replica 1 never served it.
        r, took = call_cold(dep.replicas[1], f"cold-{fault}")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert took < BOUND_S, took

        for replica in dep.replicas:
            began = time.monotonic()
            r = replica.admin("GET", "/projects")
            took = time.monotonic() - began
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
            assert took < BOUND_S, took
            began = time.monotonic()
            ready = httpx.get(f"{replica.base}/readyz", timeout=30)
            assert time.monotonic() - began < BOUND_S
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"ok": True, "degraded": ["registry"]}
        for replica in dep.replicas:
            assert "registry unavailable" in replica.stderr()
            assert "Internal error" not in replica.stderr()
    finally:
        dep.background.restore(dep.registry)

    # Recovery: the cold tenant and the admin API answer again within a few seconds.
    poll(lambda: call_cold(dep.replicas[1], f"cold-{fault}")[0].status_code == 200, 10)
    poll(lambda: dep.replicas[1].admin("GET", "/projects").status_code == 200, 10)
