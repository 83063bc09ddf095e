"""The tenant cache: TTL backstop, misses kept at most a second, single flight, per-project
invalidation — and, through the real app, stale-while-error when the registry goes away."""

from __future__ import annotations

import asyncio

import pytest
from tenant_setup import demo_tenant

from tenancy.cache import TTLCache

HOST = {"Host": "shop.api.example.com"}


async def test_concurrent_misses_load_once() -> None:
    cache: TTLCache[str] = TTLCache("t", ttl=30)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    results = await asyncio.gather(*(cache.get(("p", "e"), load) for _ in range(50)))
    assert results == ["value"] * 50
    assert calls == 1
    assert await cache.get(("p", "e"), load) == "value" and calls == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: TTLCache[str] = TTLCache("t", ttl=30)
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise OSError("registry down")

    results = await asyncio.gather(
        *(cache.get(("p",), failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results) and calls == 1
    with pytest.raises(OSError):
        await cache.get(("p",), failing)
    assert calls == 2


async def test_misses_are_kept_at_most_the_miss_ttl() -> None:
    cache: TTLCache[str] = TTLCache("t", ttl=30, miss_ttl=0.2)
    value: str | None = None

    async def load() -> str | None:
        return value

    assert await cache.get(("new",), load) is None
    value = "created"
    assert await cache.get(("new",), load) is None  # the miss is still cached...
    await asyncio.sleep(0.25)
    assert await cache.get(("new",), load) == "created"  # ...for no longer than miss_ttl


async def test_values_expire_after_the_ttl() -> None:
    cache: TTLCache[int] = TTLCache("t", ttl=0.1)
    counter = iter(range(10))

    async def load() -> int:
        return next(counter)

    assert await cache.get(("p",), load) == 0
    assert await cache.get(("p",), load) == 0
    await asyncio.sleep(0.15)
    assert await cache.get(("p",), load) == 1
    assert cache.fresh(("p",)) == 1


async def test_invalidation_drops_one_project_and_in_flight_loads() -> None:
    cache: TTLCache[str] = TTLCache("t", ttl=30)

    async def value(v: str) -> str:
        return v

    await cache.get(("a", "prod"), lambda: value("a1"))
    await cache.get(("b", "prod"), lambda: value("b1"))
    cache.invalidate("a")
    assert cache.peek(("a", "prod")) is None and cache.peek(("b", "prod")) == "b1"

    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "stale"

    pending = asyncio.create_task(cache.get(("a", "prod"), slow))
    await asyncio.sleep(0)
    cache.invalidate("a")  # a change lands while the old value is being loaded
    release.set()
    assert await pending == "stale"
    assert cache.peek(("a", "prod")) is None  # ...so that load is not kept


async def test_stale_while_error_when_the_registry_is_gone(bridge) -> None:
    """A tenant already served keeps being served; one never seen gets 503."""
    key = await demo_tenant(bridge, "shop")
    headers = {**HOST, "X-Santokit-Api-Key": key}
    body = {"path": "logics/public/stats"}
    assert (await bridge.client.post("/call", json=body, headers=headers)).status_code == 200
    for cache in bridge.rt.directory.caches:
        cache.ttl = cache.miss_ttl = 0  # every lookup now goes back to the registry
    await bridge.rt.engine.dispose()
    (bridge.data_dir / "registry.db").unlink()
    (bridge.data_dir / "registry.db").mkdir()  # SQLite cannot open a directory
    served = await bridge.client.post("/call", json=body, headers=headers)
    assert served.status_code == 200, served.text
    unknown = await bridge.client.post(
        "/call", json=body, headers={"Host": "other.api.example.com"}
    )
    assert unknown.status_code == 503
    assert unknown.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
