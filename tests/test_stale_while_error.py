"""Stale-while-error that holds (issue 8, item 1), through the real app on real Redis behind a
controllable TCP proxy (`support.faults.TcpProxy`): warm tenants keep answering while the KV
store is hung or gone, after an admin change too, and only the first request of a back-off
window pays the dependency's timeout; invalidation marks one project's entries stale, hosts and
API keys included, never every tenant's."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.bridge import Bridge, running_bridge, stale_total
from support.faults import TcpProxy
from support.services import asyncpg_url
from support.world import World

STATS = "logics/public/stats"
SOCKET_TIMEOUT = 0.5  # the test's Redis timeout: what one request may pay
BOUND = 3.0  # generous: no request waits more than one timeout (plus the app's own work)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.accept()
    try:
        yield proxy
    finally:
        await proxy.close()


def through(redis_url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(redis_url)
    return parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


def blackhole(proxy: TcpProxy) -> None:
    """Redis hangs: connections in flight go silent, new ones are accepted and never answered."""
    proxy.mode = "blackhole"
    proxy.cut()


async def timed_call(world: World, project: str, key: str) -> tuple[int, float]:
    started = time.monotonic()
    response = await world.call(STATS, project=project, key=key)
    return response.status_code, time.monotonic() - started


@asynccontextmanager
async def kv_bridge(tmp_path: Path, redis_url: str, proxy: TcpProxy) -> AsyncIterator[Bridge]:
    """The app with its KV store (and invalidation) on Redis through `proxy`."""
    async with running_bridge(
        tmp_path,
        kv_url=through(redis_url, proxy),
        cache_ttl_seconds=0.3,
        redis_socket_timeout_seconds=SOCKET_TIMEOUT,
        redis_connect_timeout_seconds=SOCKET_TIMEOUT,
        dependency_breaker_open_seconds=2,
    ) as bridge:
        yield bridge


async def test_a_hung_kv_store_costs_one_timeout_per_window_not_per_request(
    tmp_path: Path, redis_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    async with kv_bridge(tmp_path, redis_url, proxy) as bridge:
        world = World(bridge)
        for project in ("shop", "blog"):
            await world.demo(project)
            assert (await world.call(STATS, project=project, key=project)).status_code == 200
        blackhole(proxy)
        await asyncio.sleep(0.4)  # every cached manifest has expired
        timings = [await timed_call(world, p, p) for p in ("shop", "blog") * 10]
        assert {status for status, _ in timings} == {200}, timings
        assert max(seconds for _, seconds in timings) < BOUND, timings
        # The first lookup of each manifest paid the timeout; none after it within the window.
        slow = [seconds for _, seconds in timings if seconds >= SOCKET_TIMEOUT]
        assert len(slow) <= 2, timings
        assert all(seconds < SOCKET_TIMEOUT for _, seconds in timings[2:]), timings
        metrics = (await bridge.client.get("/metrics")).text
        assert stale_total(metrics, "kv") >= 18
        # One log line per tenant and window, not one per request.
        lines = [r.getMessage() for r in caplog.records if "serving cached" in r.getMessage()]
        tenants = [re.search(r"of (\w+) \(", line) for line in lines]
        assert sorted(t.group(1) for t in tenants if t) == ["blog", "shop"], lines
        # Redis is back: once the window is over, the manifests are loaded again.
        proxy.mode = "pass"
        rt = bridge.rt
        await asyncio.sleep(2.1)
        assert (await world.call(STATS, project="shop", key="shop")).status_code == 200
        assert rt.directory.kv.breaker.state == "closed"
        assert rt.directory.manifests.fresh(("shop",)) is not None


async def test_an_admin_change_during_a_kv_outage_keeps_the_tenant_served(
    tmp_path: Path, redis_url: str, proxy: TcpProxy
) -> None:
    """The row "Redis killed: one tenant 503 for the rest of the outage after an admin change":
    the change marks the manifest stale instead of dropping it, so the failed reload still has
    a value to serve."""
    async with kv_bridge(tmp_path, redis_url, proxy) as bridge:
        world = World(bridge)
        await world.demo("shop")
        assert (await world.call(STATS, project="shop", key="shop")).status_code == 200
        await proxy.refuse()
        await bridge.admin("PATCH", "/projects/shop", 200, json={"limits": {"maxConcurrency": 9}})
        for _ in range(5):
            status, seconds = await timed_call(world, "shop", "shop")
            assert status == 200 and seconds < BOUND


async def test_a_key_revoked_during_a_kv_outage_drops_the_key_not_the_tenant(
    tmp_path: Path, redis_url: str, proxy: TcpProxy
) -> None:
    """A revocation fails closed on the key only: it used to drop every entry of the project,
    the manifest too, so with the KV store down the tenant answered 503 on that replica for
    the rest of the outage (found by `tests/faults/test_redis_faults.py`)."""
    async with kv_bridge(tmp_path, redis_url, proxy) as bridge:
        world = World(bridge)
        await world.demo("shop")
        await world.api_key("shop", "prod", "doomed", ("admin",))
        for key in ("shop", "doomed"):
            assert (await world.call(STATS, project="shop", key=key)).status_code == 200
        await proxy.refuse()
        doomed = world.key_ids["doomed"]
        await bridge.admin("DELETE", f"/projects/shop/envs/prod/api-keys/{doomed}", 204)
        assert (await world.call(STATS, project="shop", key="doomed")).status_code == 401
        for _ in range(5):
            status, seconds = await timed_call(world, "shop", "shop")
            assert status == 200 and seconds < BOUND


async def test_a_change_marks_only_its_own_projects_hosts_and_keys_stale(bridge: Bridge) -> None:
    world = World(bridge)
    for project in ("shop", "blog"):
        await world.demo(project)
        assert (await world.call(STATS, project=project, key=project)).status_code == 200
    directory = bridge.rt.directory
    shop_key, blog_key = world.key_ids["shop"], world.key_ids["blog"]
    assert directory.api_keys.fresh(("*key*", blog_key)) is not None
    await world.api_key("shop", "prod", "another")  # any change of shop
    assert directory.api_keys.fresh(("*key*", shop_key)) is None  # marked stale...
    assert directory.api_keys.peek(("*key*", shop_key)) is not None  # ...not dropped
    assert directory.api_keys.fresh(("*key*", blog_key)) is not None  # blog untouched
    assert directory.manifests.fresh(("blog",)) is not None
    # A revoked key is dropped, never served stale (fail closed).
    await bridge.admin("DELETE", f"/projects/shop/envs/prod/api-keys/{shop_key}", 204)
    assert directory.api_keys.peek(("*key*", shop_key)) is None
    assert (await world.call(STATS, project="shop", key="shop")).status_code == 401
    assert (await world.call(STATS, project="blog", key="blog")).status_code == 200


async def test_a_blackholed_registry_leaves_warm_tenants_served_each_request_bounded(
    tmp_path: Path, pg_url: str
) -> None:
    """The row "registry blackholed: warm tenants 90.6 % success (API-key traffic 9.4 %), p50
    10 s": every registry-backed entry of a warm tenant (project, API key, connection) is
    served stale; the first failed load opens the registry's breaker, so no request pays more
    than about one timeout, and a tenant never seen gets 503 at once."""
    parts = urlsplit(asyncpg_url(pg_url))
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.accept()
    user = f"{parts.username}@" if parts.username else ""
    registry = parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl()
    try:
        async with running_bridge(
            tmp_path,
            registry_url=registry,
            cache_ttl_seconds=0.3,
            registry_connect_timeout_ms=500,
            registry_command_timeout_ms=500,
            registry_pool_timeout_ms=500,
        ) as bridge:
            world = World(bridge)
            for project in ("shop", "blog"):
                await world.demo(project)
                assert (await world.call(STATS, project=project, key=project)).status_code == 200
            blackhole(proxy)
            await asyncio.sleep(0.4)  # every cached registry entry has expired
            timings = [await timed_call(world, p, p) for p in ("shop", "blog") * 10]
            # Should a request after the first ever wait: did a second load reach the registry?
            breaker = bridge.rt.directory.registry.breaker
            seen = (timings, breaker.failures, breaker.trips, breaker.rejections)
            assert {status for status, _ in timings} == {200}, seen
            assert max(seconds for _, seconds in timings) < BOUND, seen
            assert all(seconds < 0.4 for _, seconds in timings[1:]), seen
            assert breaker.failures == 1, seen  # the first request's load opened the breaker
            started = time.monotonic()
            cold = await world.call(STATS, headers={"Host": "never.api.example.com"})
            assert cold.status_code == 503 and time.monotonic() - started < 0.4
            metrics = (await bridge.client.get("/metrics")).text
            assert stale_total(metrics, "registry") >= 19 * 2  # project and key, at least
            assert 'stk_dependency_breaker_open{dependency="registry"} 1' in metrics
    finally:
        await proxy.close()
