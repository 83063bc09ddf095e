"""The cache toolkit (`tenancy.cache`): TTL backstop, LRU bound, misses kept at most a second,
single flight, stale-on-error, per-project invalidation and counters — and, through the real
app, stale-while-error when the registry goes away and every cache counted in /metrics."""

from __future__ import annotations

import asyncio
import re

import pytest

from tenancy.breaker import Breaker
from tenancy.cache import MISS_TTL_MAX, Cache, StaleOnError, kv_policy, registry_policy
from tenancy.errors import ServiceUnavailable

from support.bridge import running_bridge
from support.world import World

HOST = {"Host": "shop.api.example.com"}
STATS = {"path": "logics/public/stats"}


async def value(v: str) -> str:
    return v


async def test_concurrent_misses_load_once() -> None:
    cache: Cache[str] = Cache("t", ttl=30)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    results = await asyncio.gather(*(cache.get(("p", "e"), load) for _ in range(50)))
    assert results == ["value"] * 50
    assert calls == 1
    assert (cache.hits, cache.misses) == (0, 50)
    assert await cache.get(("p", "e"), load) == "value" and calls == 1
    assert (cache.hits, cache.misses, cache.stale) == (1, 50, 0)


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: Cache[str] = Cache("t", ttl=30)
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
    assert calls == 2 and len(cache) == 0


async def test_misses_are_kept_at_most_the_miss_ttl() -> None:
    cache: Cache[str] = Cache("t", ttl=30, miss_ttl=0.2)
    found: str | None = None

    async def load() -> str | None:
        return found

    assert await cache.get(("new",), load) is None
    found = "created"
    assert await cache.get(("new",), load) is None  # the miss is still cached...
    await asyncio.sleep(0.25)
    assert await cache.get(("new",), load) == "created"  # ...for no longer than miss_ttl


async def test_no_cache_keeps_a_miss_longer_than_a_second() -> None:
    for ttl in (30.0, None):
        asked: Cache[str] = Cache("t", ttl=ttl, miss_ttl=60)
        assert asked.miss_ttl == MISS_TTL_MAX == 1.0
    assert Cache("t", ttl=0.5).miss_ttl == 0.5  # and never longer than the TTL itself
    cache: Cache[str] = Cache("t", ttl=None, miss_ttl=60)
    found: str | None = None

    async def load() -> str | None:
        return found

    assert await cache.get(("new",), load) is None
    found = "created"
    await asyncio.sleep(MISS_TTL_MAX + 0.1)
    assert await cache.get(("new",), load) == "created"


async def test_values_expire_after_the_ttl() -> None:
    cache: Cache[int] = Cache("t", ttl=0.1)
    counter = iter(range(10))

    async def load() -> int:
        return next(counter)

    assert await cache.get(("p",), load) == 0
    assert await cache.get(("p",), load) == 0
    await asyncio.sleep(0.15)
    assert cache.fresh(("p",)) is None and cache.peek(("p",)) == 0  # expired, still held
    assert await cache.get(("p",), load) == 1
    assert cache.fresh(("p",)) == 1


async def test_values_without_a_ttl_never_expire() -> None:
    cache: Cache[str] = Cache("t", ttl=None)
    await cache.get(("p", "r1"), lambda: value("body"))
    assert cache.ttl == float("inf")
    assert await cache.get(("p", "r1"), lambda: value("other")) == "body"


async def test_the_lru_bound_evicts_the_least_recently_stored() -> None:
    cache: Cache[str] = Cache("t", ttl=30, max_entries=3)
    for name in "abcd":
        await cache.get((name,), lambda name=name: value(name))  # type: ignore[misc]
    assert len(cache) == 3 and cache.peek(("a",)) is None
    # A hit on a TTL'd entry does not reorder it (a hit stays a lookup and a clock read)...
    assert await cache.get(("b",), lambda: value("again")) == "b"
    cache.put(("e",), "e")
    assert cache.peek(("b",)) is None and len(cache) == 3


async def test_without_a_ttl_a_hit_makes_an_entry_the_most_recent() -> None:
    # ...but without a TTL nothing else would refresh it: a hit moves it to the end (true LRU).
    cache: Cache[str] = Cache("t", ttl=None, max_entries=3)
    for name in "abc":
        cache.put((name,), name)
    assert await cache.get(("a",), lambda: value("never")) == "a"
    assert cache.lookup(("b",)) == "b"
    cache.put(("d",), "d")
    assert [k for k in "abcd" if cache.peek((k,)) is not None] == ["a", "b", "d"]


async def test_invalidation_drops_one_project_and_in_flight_loads() -> None:
    cache: Cache[str] = Cache("t", ttl=30)

    await cache.get(("a", "prod"), lambda: value("a1"))
    await cache.get(("a", "dev"), lambda: value("a2"))
    await cache.get(("b", "prod"), lambda: value("b1"))
    cache.invalidate("a")
    assert cache.peek(("a", "prod")) is None and cache.peek(("a", "dev")) is None
    assert cache.peek(("b", "prod")) == "b1"

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

    cache.invalidate()
    assert len(cache) == 0


async def test_lookup_put_and_discard_count_like_get() -> None:
    cache: Cache[str] = Cache("t", ttl=30)
    assert cache.lookup(("p", "k")) is None
    cache.put(("p", "k"), "v")
    assert cache.lookup(("p", "k")) == "v"
    cache.discard(("p", "k"))
    cache.discard(("p", "never"))
    assert cache.lookup(("p", "k")) is None
    assert (cache.hits, cache.misses, cache.stale) == (1, 2, 0)


def down(open_seconds: float = 0.05, failures: int = 3) -> StaleOnError:
    """A test dependency whose breaker re-arms stale values for `open_seconds`."""
    return StaleOnError(
        "test db", (OSError,), "Test db unavailable", breaker=Breaker(failures, open_seconds)
    )


async def failing() -> str:
    raise ConnectionRefusedError("down")


async def test_stale_on_error_serves_the_last_value_and_counts_it() -> None:
    policy = down()
    cache: Cache[str] = Cache("t", ttl=0.05, stale_on_error=policy)
    assert await cache.get(("p",), lambda: value("v1")) == "v1"
    await asyncio.sleep(0.08)
    results = await asyncio.gather(*(cache.get(("p",), failing) for _ in range(3)))
    assert results == ["v1"] * 3
    # One lookup, one result: a stale answer is not also a miss.
    assert (cache.hits, cache.misses, cache.stale) == (0, 1, 3) and policy.served == 3
    # The dependency is back: once the back-off window is over, the next lookup reloads.
    await asyncio.sleep(0.08)
    assert await cache.get(("p",), lambda: value("v2")) == "v2"


async def test_a_failed_reload_rearms_the_stale_value_for_the_back_off() -> None:
    """The second request does not pay the dependency's timeout a second time."""
    cache: Cache[str] = Cache("t", ttl=0.01, stale_on_error=down(open_seconds=0.3))
    await cache.get(("p",), lambda: value("v1"))
    await asyncio.sleep(0.02)
    calls = 0

    async def hung() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)  # the dependency's timeout
        raise TimeoutError

    assert await cache.get(("p",), hung) == "v1"
    started = asyncio.get_running_loop().time()
    for _ in range(20):
        assert await cache.get(("p",), hung) == "v1"
    assert calls == 1 and asyncio.get_running_loop().time() - started < 0.05
    assert cache.stale == 21 and cache.fresh(("p",)) is None  # stale, never fresh
    await asyncio.sleep(0.35)
    assert await cache.get(("p",), lambda: value("v2")) == "v2"  # window over: reloaded


async def test_the_dependency_breaker_stops_every_key_paying_a_timeout() -> None:
    """After `failures` consecutive failed loads (any keys), loads pause for the window: warm
    keys answer stale at once, cold keys 503 at once; then one probe at a time."""
    policy = down(open_seconds=0.3, failures=2)
    cache: Cache[str] = Cache("t", ttl=0.01, stale_on_error=policy)
    for name in "abcd":
        await cache.get((name,), lambda name=name: value(name))  # type: ignore[misc]
    await asyncio.sleep(0.02)
    calls = 0

    async def hung() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        raise TimeoutError

    assert [await cache.get((k,), hung) for k in "ab"] == ["a", "b"]
    assert calls == 2 and policy.breaker.state == "open"
    started = asyncio.get_running_loop().time()
    assert [await cache.get((k,), hung) for k in "cd"] == ["c", "d"]
    with pytest.raises(ServiceUnavailable, match="Test db unavailable"):
        await cache.get(("cold",), hung)
    assert calls == 2 and asyncio.get_running_loop().time() - started < 0.05
    await asyncio.sleep(0.65)  # past the re-arm of every key and the breaker's window
    # Half-open: one lookup probes (and pays the timeout), the others answer stale meanwhile.
    probe = asyncio.create_task(cache.get(("a",), hung))
    await asyncio.sleep(0.01)
    assert await cache.get(("b",), hung) == "b" and calls == 1 + 2
    assert await probe == "a" and policy.breaker.state == "open"
    await asyncio.sleep(0.35)
    assert await cache.get(("b",), lambda: value("b2")) == "b2"
    assert policy.breaker.state == "closed"


async def test_a_changed_entry_is_loaded_once_even_while_the_breaker_is_open() -> None:
    """A change shows its writer just reached the dependency: the entry it marked is tried at
    once (within the 1 s invalidation target), not after the breaker's window. A resync (nothing
    known to have changed) earns no such load."""
    policy = down(open_seconds=60, failures=1)
    cache: Cache[str] = Cache("t", ttl=0.01, stale_on_error=policy)
    for name in "abcd":
        cache.put((name,), name)
    await asyncio.sleep(0.02)
    assert await cache.get(("a",), failing) == "a" and policy.breaker.state == "open"
    cache.invalidate("b")
    assert await cache.get(("b",), lambda: value("b2")) == "b2"  # loaded despite the breaker
    assert policy.breaker.state == "closed"  # ...and it showed the dependency is back
    assert await cache.get(("c",), failing) == "c" and policy.breaker.state == "open"
    cache.invalidate(changed=False)
    assert await cache.get(("d",), lambda: value("d2")) == "d"  # resync: still the breaker's


async def test_stale_answers_are_logged_once_per_tenant_and_window(caplog) -> None:
    cache: Cache[str] = Cache("t", ttl=0.01, stale_on_error=down(open_seconds=0.01))
    for name in "ab":
        await cache.get((name,), lambda name=name: value(name))  # type: ignore[misc]
    for _ in range(5):
        await asyncio.sleep(0.02)
        for name in "ab":
            assert await cache.get((name,), failing) == name
    lines = [r.getMessage() for r in caplog.records if "serving cached" in r.getMessage()]
    assert len(lines) == 2 and cache.stale == 10, lines


async def test_stale_on_error_without_a_value_is_503() -> None:
    cache: Cache[str] = Cache("t", ttl=30, stale_on_error=down())
    with pytest.raises(ServiceUnavailable, match="Test db unavailable") as raised:
        await cache.get(("never-seen",), failing)
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert cache.stale == 0


async def test_an_invalidated_value_is_reloaded_and_served_stale_only_on_failure() -> None:
    cache: Cache[str] = Cache("t", ttl=30, stale_on_error=down(open_seconds=0.01))
    await cache.get(("p",), lambda: value("before the change"))
    cache.invalidate("p")
    assert cache.fresh(("p",)) is None
    assert await cache.get(("p",), failing) == "before the change"  # the dependency is down
    await asyncio.sleep(0.02)
    assert await cache.get(("p",), lambda: value("after")) == "after"  # ...and back


async def test_a_dropping_invalidation_leaves_nothing_to_serve() -> None:
    """A change that takes access away (a revoked key) must fail closed, not stale."""
    cache: Cache[str] = Cache("t", ttl=30, stale_on_error=down())
    await cache.get(("p",), lambda: value("revoked key"))
    cache.invalidate("p", drop=True)
    with pytest.raises(ServiceUnavailable):
        await cache.get(("p",), failing)


async def test_entries_owned_by_their_value_are_invalidated_per_project() -> None:
    """Hosts and API keys are keyed by host / key id: the value names the project."""
    hosts: Cache[str] = Cache("host", ttl=30, stale_on_error=down(), owner=str)
    hosts.put(("*host*", "a.example"), "a")
    hosts.put(("*host*", "b.example"), "b")
    hosts.put(("*host*", "new.example"), None)  # a miss: may be any project's next host
    hosts.invalidate("a")
    assert hosts.fresh(("*host*", "a.example")) is None
    assert hosts.peek(("*host*", "a.example")) == "a"  # stale, still there to fall back on
    assert hosts.fresh(("*host*", "b.example")) == "b"
    assert ("*host*", "new.example") not in hosts._entries
    hosts.invalidate()
    assert hosts.fresh(("*host*", "b.example")) is None and len(hosts) == 2


async def test_errors_that_are_not_the_dependency_failing_pass_through() -> None:
    policy = down(failures=1)
    cache: Cache[str] = Cache("t", ttl=0.01, stale_on_error=policy)
    await cache.get(("p",), lambda: value("v1"))
    await asyncio.sleep(0.02)

    async def broken() -> str:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await cache.get(("p",), broken)
    assert cache.stale == 0 and policy.breaker.state == "closed"


async def test_the_dependency_policies() -> None:
    """The registry's failure becomes one 503; the KV store's own 503 passes as it is."""
    registry: Cache[str] = Cache("t", ttl=30, stale_on_error=registry_policy())
    with pytest.raises(ServiceUnavailable, match="Registry unavailable"):
        await registry.get(("p",), failing)

    async def kv_down() -> str:
        raise ServiceUnavailable("KV store (redis) unavailable: ConnectionError")

    kv: Cache[str] = Cache("t", ttl=0.01, stale_on_error=kv_policy(Breaker(5, 5)))
    with pytest.raises(ServiceUnavailable, match="KV store"):
        await kv.get(("p",), kv_down)
    await kv.get(("p",), lambda: value("manifest"))
    await asyncio.sleep(0.02)
    assert await kv.get(("p",), kv_down) == "manifest" and kv.stale == 1


def cache_events(text: str) -> dict[tuple[str, str], float]:
    pattern = r'^stk_tenant_cache_events_total\{cache="(\w+)",result="(\w+)"\} (\S+)$'
    return {(c, r): float(v) for c, r, v in re.findall(pattern, text, re.MULTILINE)}


async def test_every_cache_is_counted_in_metrics(bridge) -> None:
    key = await World(bridge).demo("shop")
    headers = {**HOST, "X-Santokit-Api-Key": key}
    for _ in range(3):
        assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    text = (await bridge.client.get("/metrics")).text
    assert "# TYPE stk_tenant_cache_events_total counter" in text
    assert "# TYPE stk_invalidations_total counter" in text
    assert re.search(r"^stk_invalidations_total [1-9]", text, re.MULTILINE)
    events = cache_events(text)
    names = {cache.name for cache in bridge.rt.caches}
    assert names >= {
        "project",
        "host",
        "apikey",
        "manifest",
        "connection",
        "release",
        "signingkey",
        "token",
        "bundle",
        "apikey_use",
        "view",
        "secret",
        "storage_credentials",
    }
    assert set(events) == {(name, result) for name in names for result in ("hit", "miss", "stale")}
    # Three calls with one key: after the first, the project, key, manifest, release and
    # connection lookups hit, and the key's use was written once.
    for name in ("project", "apikey", "manifest", "release", "connection"):
        assert events[(name, "hit")] >= 2, name
    assert events[("apikey_use", "miss")] == 1 and events[("apikey_use", "hit")] == 2


async def test_stale_while_error_when_the_registry_is_gone(tmp_path) -> None:
    """A tenant already served keeps being served after its entries expired; one never seen
    gets 503; /metrics counts the stale answers."""
    async with running_bridge(tmp_path, cache_ttl_seconds=0.2) as bridge:
        key = await World(bridge).demo("shop")
        headers = {**HOST, "X-Santokit-Api-Key": key}
        assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
        await bridge.rt.engine.dispose()
        (bridge.data_dir / "registry.db").unlink()
        (bridge.data_dir / "registry.db").mkdir()  # SQLite cannot open a directory
        await asyncio.sleep(0.3)  # every cached registry entry has expired
        served = await bridge.client.post("/call", json=STATS, headers=headers)
        assert served.status_code == 200, served.text
        unknown = await bridge.client.post(
            "/call", json=STATS, headers={"Host": "other.api.example.com"}
        )
        assert unknown.status_code == 503
        assert unknown.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        events = cache_events((await bridge.client.get("/metrics")).text)
    for name in ("project", "apikey", "connection"):
        assert events[(name, "stale")] >= 1, name
