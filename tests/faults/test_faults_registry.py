"""The registry refused and blackholed under load, two replicas: warm tenants keep 100 % success
on both, every request bounded; cold tenants and the admin API answer 503 within the bound;
`/readyz` keeps warm replicas in; everything works again after recovery."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from redis import Redis

from support.processes import Server, poll, stop
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
from support.world import demo_files

pytestmark = pytest.mark.slow

WARM = ("alpha", "beta")
STATS = "logics/public/stats"


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


def test_kill_9_during_publish_leaves_the_old_or_an_audited_announced_new_release(
    dep: Deployment,
) -> None:
    """The crash is placed in the window that matters: the publish has moved the manifest (seen
    in Redis) and the registry stops answering before the audit entry lands; then kill -9."""
    one, two = dep.replicas
    url = f"{two.base}/call"
    headers = {"Host": f"alpha.{HOST_SUFFIX}"}
    assert httpx.post(url, json={"path": STATS}, headers=headers).status_code == 200
    redis = Redis(port=dep.redis.port)
    before = redis.get("manifest:alpha")
    files = demo_files(version="SELECT 'v2' AS version")
    with ThreadPoolExecutor(1) as pool:
        publish = pool.submit(
            one.admin, "POST", "/projects/alpha/envs/prod/releases", json={"files": files}
        )
        poll(lambda: redis.get("manifest:alpha") != before, 30, every=0.001)
        dep.background.blackhole(dep.registry)
        stop(one, signal.SIGKILL)
        with contextlib.suppress(httpx.HTTPError):
            publish.result(30)
    dep.background.restore(dep.registry)
    dep.start_replica(0)
    one = dep.replicas[0]

    current = one.admin("GET", "/projects/alpha/envs/prod/releases/current")
    assert current.status_code == 200, current.text
    release = current.json()["release"]
    audited = one.admin("GET", "/audit", params={"project": "alpha", "action": "release.publish"})
    published = {item["detail"].get("release") for item in audited.json()["items"]}
    assert release in published, (release, published)  # the live release is audited
    # ... and announced: the replica that cached the old release serves the new one.
    version = {"path": "logics/version"}
    poll(lambda: httpx.post(url, json=version, headers=headers).status_code == 200, 5)
