"""Per-tenant rate limits (`limits.requestsPerMinute` → 429 with Retry-After): counted per
tenant, never across tenants, shared by replicas through Redis, and covering /auth/*."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tenancy.breaker import Breaker
from tenancy.keyring import Keyring
from tenancy.limits import Rate, RateLimiter, SharedStore, allowed, results

from support.bridge import running_bridge
from support.world import World, host

CALL = {"path": "logics/public/stats"}


async def limit(bridge, project: str, per_minute: int) -> None:
    limits = {"limits": {"requestsPerMinute": per_minute}}
    await bridge.admin("PATCH", f"/projects/{project}", 200, json=limits)


async def test_a_tenant_over_its_limit_gets_429_and_others_do_not(bridge) -> None:
    await World(bridge).demo("shop")
    await World(bridge).demo("other")
    await limit(bridge, "shop", 3)
    for _ in range(3):
        assert (await bridge.client.post("/call", json=CALL, headers=host("shop"))).is_success
    refused = await bridge.client.post("/call", json=CALL, headers=host("shop"))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["requestId"] == refused.headers["x-request-id"]
    # A noisy tenant never spends another tenant's budget.
    for _ in range(5):
        assert (await bridge.client.post("/call", json=CALL, headers=host("other"))).is_success


async def test_auth_endpoints_share_the_budget(bridge) -> None:
    await World(bridge).demo("shop")
    await limit(bridge, "shop", 2)
    login = {"email": "nobody@example.com", "password": "wrong-password"}
    statuses = [
        (await bridge.client.post("/auth/login", json=login, headers=host("shop"))).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    assert (await bridge.client.post("/call", json=CALL, headers=host("shop"))).status_code == 429


async def test_replicas_share_the_count_through_redis(tmp_path, redis_url) -> None:
    registry = f"sqlite+aiosqlite:///{tmp_path}/registry.db"
    shared = {
        "registry_url": registry,
        "kv_url": redis_url,
        "redis_url": redis_url,
        "master_keys": Keyring.generate_entry("shared"),
    }
    async with (
        running_bridge(tmp_path, **shared) as first,
        running_bridge(tmp_path, **shared) as second,
    ):
        await World(first).demo("shop")
        await limit(first, "shop", 4)
        for bridge in (first, second, first, second):
            response = await bridge.client.post("/call", json=CALL, headers=host("shop"))
            assert response.is_success, response.text
        for bridge in (first, second):
            response = await bridge.client.post("/call", json=CALL, headers=host("shop"))
            assert response.status_code == 429


async def test_an_unreachable_redis_degrades_to_counting_in_process() -> None:
    store = SharedStore("redis://127.0.0.1:1/0")
    limiter = RateLimiter(store)
    rates = [Rate("tenant", "t:shop:prod", 2)]
    try:
        assert allowed(await limiter.check(rates))
        assert allowed(await limiter.check(rates))
        refused = await limiter.check(rates)
        assert not allowed(refused) and refused[2] == 30  # GCRA: one every 60/2 s
    finally:
        await store.close()


async def test_an_unreachable_redis_is_not_asked_again_within_the_breaker_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After `threshold` failures in a row the count is local at once, not one timeout per
    request (issue 8: a hung Redis cost every request its socket timeout); the fallback is
    logged once, when the breaker opens, not per request."""
    store = SharedStore("redis://127.0.0.1:1/0", breaker=Breaker(2, 60))
    limiter = RateLimiter(store)
    rates = [Rate("tenant", "t:shop:prod", 100)]
    try:
        with caplog.at_level(logging.WARNING, logger="stk.limits"):
            for _ in range(5):
                assert allowed(await limiter.check(rates))
        assert store.breaker.state == "open"
        assert (store.breaker.failures, store.breaker.rejections) == (2, 3)
        assert [r.getMessage() for r in caplog.records if r.name == "stk.limits"] == [
            "limit store unreachable; counting in this process"
        ]
    finally:
        await store.close()


class CountingStore(SharedStore):
    """The real store, counting its Redis calls."""

    calls = 0

    async def run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        self.calls += 1
        return await super().run(script, keys, args)


async def test_a_busy_bucket_asks_redis_once_per_lease_not_per_request(redis_url) -> None:
    """6,000 a minute is 100 a second: once its demand is seen, a lease covers up to 100
    requests (`docs/decisions.md`, limits), and the headers still count down."""
    store = CountingStore(redis_url)
    limiter = RateLimiter(store)
    rates = [Rate("key", "k:shop:prod:busy", 6000)]
    began = time.monotonic()
    try:
        states = [await limiter.check(rates) for _ in range(1000)]
    finally:
        await store.close()
    dripped = 100 * (time.monotonic() - began + 1)  # GCRA gives back 100 a second
    assert all(allowed(state) for state in states)
    assert store.calls < 60, store.calls
    remaining = [results(state)[0].remaining for state in states]
    # Redis answers its TATs to the microsecond: the count must not round one lower for it.
    assert remaining[0] == 5999 and 4999 <= remaining[-1] <= 5000 + dripped, remaining


async def test_leases_never_admit_beyond_the_budget_across_replicas(redis_url) -> None:
    """Two replicas spending one bucket's leases admit no more than the bucket allows (a burst
    of 240, plus what drips in meanwhile): a lease is only ever granted out of what is left."""
    stores = [CountingStore(redis_url), CountingStore(redis_url)]
    limiters = [RateLimiter(store) for store in stores]
    rates = [Rate("key", "k:shop:prod:shared", 240)]
    try:
        began = time.monotonic()
        admitted = 0
        for i in range(600):
            admitted += allowed(await limiters[i % 2].check(rates))
        elapsed = time.monotonic() - began
    finally:
        for store in stores:
            await store.close()
    assert 230 <= admitted <= 240 + 4 * (elapsed + 1), (admitted, elapsed)


async def counts_down(limiter: RateLimiter, quota: int) -> None:
    """`quota` + 1 requests at once on a new bucket: each admitted one's remaining count is
    exact, down to 0, and the last is refused with none left and one interval's wait."""
    rates = [Rate("key", f"k:shop:prod:burst-{quota}-{time.monotonic_ns()}", quota)]
    states = [await limiter.check(rates) for _ in range(quota + 1)]
    assert [allowed(state) for state in states] == [True] * quota + [False], quota
    remaining = [results(state)[0].remaining for state in states]
    assert remaining == [*range(quota - 1, -1, -1), 0], quota
    assert 1 <= states[-1][2] <= -(-60 // quota), (quota, states[-1][2])


async def test_a_burst_counts_down_every_unit_in_process() -> None:
    """`RateLimit`'s remaining count is exact for every quota: 60 / quota is rarely a whole
    float, and the TATs' rounding once read 7 where 8 remained (a quota of 9), for many
    quotas. A burst (each request within one interval of the first) counts down to 0."""
    limiter = RateLimiter(SharedStore(None))
    for quota in range(1, 121):
        await counts_down(limiter, quota)


async def test_a_burst_counts_down_every_unit_through_redis(redis_url) -> None:
    """The same through Redis, whose answers round the TATs to the microsecond; quotas whose
    interval is no whole float (9, 18, 23 read one low before), each burst well within one
    interval (2.6 s and more) on a loaded machine too."""
    store = SharedStore(redis_url)
    limiter = RateLimiter(store)
    try:
        for quota in (1, 2, 7, 9, 11, 18, 23):
            await counts_down(limiter, quota)
    finally:
        await store.close()


async def test_a_wall_clock_step_refills_no_in_process_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-process buckets run on the monotonic clock: the wall clock jumping an hour ahead
    (an NTP step, a VM resumed) gives a spent caller no new budget."""
    limiter = RateLimiter(SharedStore(None))
    rates = [Rate("key", "k:shop:prod:stepped", 2)]
    assert allowed(await limiter.check(rates)) and allowed(await limiter.check(rates))
    stepped = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: stepped)
    assert not allowed(await limiter.check(rates))
