"""Noisy neighbours and a broken tenant database, two replicas under load: five tenants flooding
slow queries leave quiet tenants ≥ 99 % success; a tenant database stopped or unreachable makes
only its own callers fail, with a 503 (504 for a statement already sent to a host that stopped
answering) within the bound, while every other tenant keeps 100 %."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.processes import poll
from support.replicas import BOUND_S, FAULT_SETTINGS, Deployment, Target, deployment, load, warm

pytestmark = pytest.mark.slow

NOISY = tuple(f"noisy{i}" for i in range(5))
QUIET = ("quiet1", "quiet2", "quiet3")
SLOW_SQL = "SELECT 1 AS n FROM pg_sleep(0.5)"


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    settings = {**FAULT_SETTINGS, "statement_timeout_ms": "1500"}
    with deployment(Path(tmp_path_factory.mktemp("tenant-faults")), **settings) as d:
        for project in (*NOISY, *QUIET):
            d.add_tenant(project, logics={"slow": SLOW_SQL})
        d.add_tenant("broken", own_proxy=True)
        yield d


def quiet_targets(dep: Deployment) -> list[Target]:
    return [
        Target("quiet", replica, project, "logics/public/stats")
        for replica in dep.replicas
        for project in QUIET
    ]


def test_five_tenants_flooding_slow_queries_leave_quiet_tenants_served(dep: Deployment) -> None:
    quiet = quiet_targets(dep)
    noisy = [
        Target("noisy", replica, project, "logics/slow")
        for replica in dep.replicas
        for project in NOISY
    ]
    warm(quiet)
    # Each noisy tenant sends 3 concurrent slow queries per replica (its whole pool), 15 per
    # replica against a budget of 12 connections: the budget is under pressure throughout.
    noise = load(noisy + noisy + noisy + quiet, seconds=8, concurrency=1)
    print("flood", noise.summary("quiet"), "| noisy", noise.summary("noisy"))
    # Success only: their latency here measures the machine (the flood's 30 clients share its
    # cores with both replicas), not the Bridge; `python -m bench.faults` records it.
    assert noise.success_rate("quiet") >= 0.99, noise.summary("quiet")
    assert noise.success_rate("noisy") > 0, noise.summary("noisy")  # they are served too


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
def test_a_broken_tenant_database_fails_only_its_own_callers_quickly(
    dep: Deployment, fault: str
) -> None:
    quiet = quiet_targets(dep)
    broken = [
        Target("broken", replica, "broken", "logics/public/stats") for replica in dep.replicas
    ]
    warm(quiet + broken)
    proxy = dep.tenants["broken"].proxy
    assert proxy is not None
    if fault == "refuse":  # a stopped database: connections dropped, connects refused
        dep.background.refuse(proxy)
    else:  # a host that stopped answering, open connections included
        dep.background.blackhole(proxy)
    try:
        results = load(quiet + broken, seconds=6, concurrency=2)
    finally:
        dep.background.restore(proxy)
    print(fault, results.summary("quiet"), "| broken", results.summary("broken"))
    assert results.success_rate("quiet") == 1.0, results.summary("quiet")
    statuses = results.statuses("broken")
    allowed = {503} if fault == "refuse" else {503, 504}
    assert set(statuses) <= allowed, statuses
    assert results.max_seconds("broken") < BOUND_S, results.summary("broken")
    # Recovered on both replicas: the breaker lets a probe through once its open time is over.
    for target in broken:
        poll(lambda target=target: answers(target) == 200, 15)


def answers(target: Target) -> int:
    url, body, headers = target.request()
    return httpx.post(url, json=body, headers=headers, timeout=10).status_code
