"""Redis killed (SIGKILL, then restarted on its port) and hung (SIGSTOP, then SIGCONT) under
load, two replicas (issue 8): warm tenants keep 100 % success on both, every request bounded,
an admin change made on one replica during the outage leaves its tenant served there, and once
Redis is back that change, and a release published after it, reach the other replica in time.

The replicas cache tenant state for the default 30 s, so only the invalidation channel (its
retried broadcast and the subscriber's resync on reconnect, `tenancy/invalidation.py`) can make
the other replica see a change within the bound; the revocation made during the outage marks
the tenant stale on its own replica, whose reload then meets the dead or hung KV store.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.bridge import stale_total
from support.processes import Server, poll
from support.replicas import (
    BOUND_S,
    FAULT_SETTINGS,
    HOST_SUFFIX,
    REQUEST_TIMEOUT_S,
    Deployment,
    deployment,
    load,
    warm,
    warm_targets,
)
from support.world import demo_files

pytestmark = pytest.mark.slow

WARM = ("alpha", "beta")
STATS = "logics/public/stats"
PHASE_S = 4.0  # load while Redis is down: long enough for the subscriber to notice a hang
# The target is 1 s (`docs/tenancy.md`, "Invalidation"); the bound is generous because the
# machine is shared, and still far below the 30 s cache TTL it would otherwise take.
CONVERGE_S = 5.0


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # FAULT_SETTINGS: a Redis socket timeout and health check of 1 s; `BOUND_S` covers one.
    with deployment(Path(tmp_path_factory.mktemp("redis-faults")), **FAULT_SETTINGS) as d:
        for project in WARM:
            d.add_tenant(project)
        yield d


def call(replica: Server, path: str, api_key: str | None = None) -> httpx.Response:
    headers = {"Host": f"alpha.{HOST_SUFFIX}"}
    if api_key:
        headers["X-Santokit-Api-Key"] = api_key
    return httpx.post(
        f"{replica.base}/call", json={"path": path}, headers=headers, timeout=REQUEST_TIMEOUT_S
    )


def fault(dep: Deployment, kind: str) -> None:
    if kind == "kill":
        dep.redis.stop(signal.SIGKILL)
    else:
        dep.redis.send(signal.SIGSTOP)


def recover(dep: Deployment, kind: str) -> None:
    if kind == "kill":
        dep.redis.start()  # same port, same append-only file
    else:
        dep.redis.send(signal.SIGCONT)


@pytest.mark.parametrize("kind", ["kill", "stop"])
def test_redis_down_leaves_warm_tenants_whole_and_invalidation_converges_after(
    dep: Deployment, kind: str
) -> None:
    one, two = dep.replicas
    base = "/projects/alpha/envs/prod"
    created = one.admin("POST", f"{base}/api-keys", json={"name": kind, "roles": ["admin"]})
    assert created.status_code == 201, created.text
    doomed: str = created.json()["apiKey"]
    targets = warm_targets(dep, WARM)
    warm(targets)
    assert call(two, STATS, doomed).status_code == 200  # replica 2 has the key cached

    stale_before = stale_total(httpx.get(f"{one.base}/metrics").text, "kv")

    fault(dep, kind)
    try:
        # An admin change that needs only the registry: applied on replica 1 at once, its
        # broadcast queued until Redis takes it; alpha is now stale on replica 1.
        began = time.monotonic()
        key_id = doomed.removeprefix("stk_").split(".")[0]
        revoked = one.admin("DELETE", f"{base}/api-keys/{key_id}")
        assert revoked.status_code == 204, revoked.text
        assert time.monotonic() - began < BOUND_S
        results = load(targets, seconds=PHASE_S, concurrency=1)
    finally:
        recover(dep, kind)
    print(kind, results.summary())
    assert results.success_rate() == 1.0, results.summary()
    assert results.max_seconds() < BOUND_S, results.summary()
    # Replica 1 did meet the fault: its reload of alpha after the change failed, served stale.
    metrics = httpx.get(f"{one.base}/metrics", timeout=REQUEST_TIMEOUT_S).text
    assert stale_total(metrics, "kv") > stale_before, metrics

    # Redis is back: the revocation reaches replica 2 (the retried broadcast, or the resync).
    _, took = poll(lambda: call(two, STATS, doomed).status_code == 401, CONVERGE_S)
    print(kind, f"revocation reached replica 2 {took:.2f}s after Redis was back")
    after = load(targets, seconds=2, concurrency=1)
    print(kind, "after", after.summary())
    assert after.success_rate() == 1.0, after.summary()
    assert after.max_seconds() < BOUND_S, after.summary()

    # A release published on replica 1 now is served by replica 2 within the bound.
    version = f"after-{kind}"
    files = demo_files(version=f"SELECT '{version}' AS version")
    published = one.admin("POST", f"{base}/releases", json={"files": files})
    assert published.status_code == 201, published.text
    _, took = poll(
        lambda: (
            (r := call(two, "logics/version")).status_code == 200
            and r.json() == {"data": [{"version": version}]}
        ),
        CONVERGE_S,
    )
    print(kind, f"release reached replica 2 in {took:.2f}s")
