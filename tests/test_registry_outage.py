"""The registry refused or blackholed behind a TCP proxy (`docs/operations.md`, "When a dependency
is down"): every wait is bounded, every route answers 503 `SERVICE_UNAVAILABLE` with one log line
naming the registry (never 500), `/readyz` stays ready while cached tenants can be served, and
`/healthz` never looks at a dependency.

The processes-and-load version of the same faults is `tests/faults/`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.bridge import running_bridge
from support.faults import TcpProxy
from support.processes import master_keys
from support.services import asyncpg_url, pg_database
from support.world import World, demo_files

# Short registry timeouts keep the test quick; the bound below is what they imply plus margin.
TIMEOUTS = {
    "registry_connect_timeout_ms": 500,
    "registry_command_timeout_ms": 1000,
    "registry_pool_timeout_ms": 500,
}
BOUND_S = 3.0


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[World, TcpProxy]]:
    """A Bridge whose PostgreSQL registry is reached through a proxy the test controls, with a
    warm tenant `warm` (served once, so cached) and a tenant `cold` it never served (both set up
    through another Bridge on the same registry)."""
    keys, kv = master_keys(), f"file://{tmp_path}/kv"
    async with pg_database() as url:
        async with running_bridge(tmp_path, asyncpg_url(url), kv, keys) as setup:
            for project in ("warm", "cold"):
                await World(setup).demo(project)
        parts = urlsplit(url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        port = await proxy.accept()
        through = asyncpg_url(url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{port}"))
        try:
            async with running_bridge(tmp_path, through, kv, keys, **TIMEOUTS) as b:
                world = World(b)
                await warm_up(world)
                yield world, proxy
        finally:
            await proxy.close()


async def warm_up(world: World) -> None:
    """Serve `warm` once, so its entries are cached. With the short timeouts above, a loaded
    machine may miss one on the very first loads (the registry's breaker then pauses loads for
    5 s): the warm-up waits that out instead of failing before the fault is injected."""
    deadline = time.monotonic() + 30
    while (status := (await world.call("logics/public/stats", project="warm")).status_code) != 200:
        assert status == 503 and time.monotonic() < deadline, status
        await asyncio.sleep(0.5)


async def timed(
    world: World, *args: object, **kwargs: object
) -> tuple[int, dict[str, object], float]:
    began = time.monotonic()
    r = await world.call(*args, **kwargs)  # type: ignore[arg-type]
    return r.status_code, r.json(), time.monotonic() - began


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_a_down_registry_answers_503_within_the_bound_and_warm_tenants_keep_serving(
    proxied: tuple[World, TcpProxy], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    world, proxy = proxied
    if fault == "refuse":
        await proxy.refuse()
    else:
        proxy.mode = "blackhole"
    caplog.set_level(logging.WARNING)

    status, body, took = await timed(world, "logics/public/stats", project="warm")
    assert (status, took < BOUND_S) == (200, True), (status, body, took)

    status, body, took = await timed(world, "logics/public/stats", project="cold")
    assert status == 503, body
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"  # type: ignore[index]
    assert took < BOUND_S, took

    for method, path in (("GET", "/projects"), ("GET", "/projects/warm"), ("POST", "/projects")):
        caplog.clear()
        began = time.monotonic()
        kwargs = {"json": {"id": "newproject"}} if method == "POST" else {}
        r = await world.admin(method, path, **kwargs)
        took = time.monotonic() - began
        assert r.status_code == 503, (method, path, r.text)
        assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert took < BOUND_S, (method, path, took)
        named = [rec for rec in caplog.records if "registry unavailable" in rec.getMessage()]
        assert len(named) == 1, [rec.getMessage() for rec in caplog.records]
        assert "[SQL" not in named[0].getMessage() and "newproject" not in named[0].getMessage()
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]

    # Readiness: this replica still serves its cached tenant, so it stays in the balancer.
    began = time.monotonic()
    ready = await world.client.get("/readyz")
    assert time.monotonic() - began < BOUND_S
    assert (ready.status_code, ready.json()) == (200, {"ok": True, "degraded": ["registry"]})
    assert (await world.client.get("/healthz")).json() == {"ok": True}


async def test_a_replica_with_nothing_cached_is_not_ready_while_the_registry_is_down(
    proxied: tuple[World, TcpProxy],
) -> None:
    world, proxy = proxied
    proxy.mode = "blackhole"
    world.bridge.rt.directory.releases.invalidate()
    began = time.monotonic()
    ready = await world.client.get("/readyz")
    assert time.monotonic() - began < BOUND_S
    assert ready.status_code == 503
    assert ready.json() == {"ok": False, "reason": "registry unreachable", "degraded": ["registry"]}
    assert (await world.client.get("/healthz")).status_code == 200

    proxy.mode = "pass"
    proxy.cut()
    ready = await world.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"ok": True})
    r = await world.call("logics/public/stats", project="cold")
    assert r.status_code == 200, r.text


async def test_a_down_kv_store_answers_503_on_the_admin_api_with_one_line_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kv_dir = tmp_path / "kv"
    async with running_bridge(tmp_path, kv_url=f"file://{kv_dir}") as bridge:
        world = World(bridge)
        await world.demo("shop")
        shutil.rmtree(kv_dir)
        kv_dir.write_text("not a directory any more")
        caplog.set_level(logging.WARNING)
        r = await world.admin(
            "POST", "/projects/shop/envs/prod/releases", json={"files": demo_files()}
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        named = [rec for rec in caplog.records if "KV store unavailable" in rec.getMessage()]
        assert len(named) == 1, [rec.getMessage() for rec in caplog.records]


async def test_a_locked_sqlite_registry_answers_503_after_the_command_timeout(
    tmp_path: Path,
) -> None:
    async with running_bridge(tmp_path, **TIMEOUTS) as bridge:
        holder = sqlite3.connect(tmp_path / "registry.db")
        try:
            holder.execute("BEGIN EXCLUSIVE")
            began = time.monotonic()
            r = await bridge.admin("POST", "/projects", json={"id": "locked"})
            took = time.monotonic() - began
        finally:
            holder.close()
        assert r.status_code == 503, r.text
        assert r.json()["error"] == {
            "code": "SERVICE_UNAVAILABLE",
            "message": "Registry unavailable",
            "requestId": r.headers["x-request-id"],
        }
        assert 0.4 < took < BOUND_S, took
        await bridge.admin("POST", "/projects", 201, json={"id": "locked"})
