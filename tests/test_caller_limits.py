"""Limits beyond the tenant (issue 9 row 5 and item 3): per API key, per end user and per client
address (`config/limits.yaml`, defaulted by settings), the `RateLimit-Policy` / `RateLimit`
headers, client addresses through trusted proxies only, and the sign-in back-off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.middleware import rate_headers
from tenancy.errors import PublishError
from tenancy.limits import AuthThrottle, Rate, RateLimiter, SharedStore, allowed, results
from tenancy.releases.compile.compiler import compile_release

from support.auth import auth_world
from support.bridge import Bridge, running_bridge
from support.world import World, demo_files, host, new_email, seeded_sqlite

CALL = {"path": "logics/public/stats"}
LIMITS = "requestsPerMinute: {perApiKey: 2, perAddress: 4}\n"


async def shop(bridge: Bridge, limits: str | None = LIMITS) -> World:
    """Project `shop` (demo, two API keys `a` and `b`), with `limits` as config/limits.yaml."""
    world = World(bridge)
    await world.project("shop")
    files = demo_files() | ({"config/limits.yaml": limits} if limits else {})
    url = seeded_sqlite(bridge.data_dir / "shop.db")
    await world.tenant("shop", "prod", url, files, keys={"a": ["admin"], "b": ["admin"]})
    return world


async def call(world: World, key: str | None = None, **headers: str) -> httpx.Response:
    sent = {**host("shop"), **headers}
    if key is not None:
        sent["X-Santokit-Api-Key"] = world.keys[key]
    return await world.client.post("/call", json=CALL, headers=sent)


def refused(r: httpx.Response, policy: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert int(r.headers["Retry-After"]) >= 1
    assert f'"{policy}";' in r.headers["RateLimit-Policy"]
    assert f'"{policy}";r=0;' in r.headers["RateLimit"]


async def test_each_api_key_has_its_own_budget_with_standard_headers(bridge: Bridge) -> None:
    world = await shop(bridge, "requestsPerMinute: {perApiKey: 2}\n")
    first = await call(world, "a")
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"key";q=2;w=60'
    assert first.headers["RateLimit"] == '"key";r=1;t=30'
    assert (await call(world, "a")).status_code == 200
    refused(await call(world, "a"), "key")
    assert (await call(world, "b")).status_code == 200  # another key: its own budget
    # Anonymous callers carry no key: that limit does not apply, and no header is sent.
    anonymous = await call(world)
    assert anonymous.status_code == 200 and "RateLimit" not in anonymous.headers


async def test_settings_give_the_default_and_the_file_overrides_it(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, rate_per_api_key=1) as b:
        world = await shop(b, limits=None)
        assert (await call(world, "a")).status_code == 200
        refused(await call(world, "a"), "key")
        await world.publish("shop", "prod", demo_files() | {"config/limits.yaml": LIMITS})
        assert (await call(world, "b")).status_code == 200
        assert (await call(world, "b")).status_code == 200
        refused(await call(world, "b"), "key")
        # 0 turns the setting's default off for this project.
        off = "requestsPerMinute: {perApiKey: 0}\n"
        await world.publish("shop", "prod", demo_files() | {"config/limits.yaml": off})
        answers = [await call(world, "a") for _ in range(3)]
        assert all(r.status_code == 200 and "RateLimit" not in r.headers for r in answers)


async def test_unlimited_tenants_get_no_headers(bridge: Bridge) -> None:
    world = await shop(bridge, limits=None)
    r = await call(world, "a")
    assert r.status_code == 200 and "RateLimit-Policy" not in r.headers


async def test_addresses_count_the_peer_unless_a_trusted_proxy_forwards(tmp_path: Path) -> None:
    limits = "requestsPerMinute: {perAddress: 1}\n"
    (tmp_path / "direct").mkdir()
    (tmp_path / "proxied").mkdir()
    async with running_bridge(tmp_path / "direct") as b:
        world = await shop(b, limits)
        assert (await call(world)).status_code == 200
        # Not behind a trusted proxy: X-Forwarded-For is the client's own claim, ignored.
        refused(await call(world, **{"X-Forwarded-For": "198.51.100.1"}), "address")
    # The test client's peer address is 203.0.113.7: trusted, it forwards for others.
    async with running_bridge(tmp_path / "proxied", trusted_proxies="203.0.113.0/24") as b:
        world = await shop(b, limits)
        one = {"X-Forwarded-For": "198.51.100.1"}
        assert (await call(world, **one)).status_code == 200
        refused(await call(world, **one), "address")
        # Another client behind the same proxy; a spoofed left entry does not move the count.
        assert (await call(world, **{"X-Forwarded-For": "6.6.6.6, 198.51.100.2"})).is_success
        refused(await call(world, **{"X-Forwarded-For": "7.7.7.7, 198.51.100.2"}), "address")


async def test_end_users_are_limited_per_user(tmp_path: Path) -> None:
    async with auth_world(tmp_path, rate_per_user=2) as world:
        first, second = await world.session(), await world.session()
        for login in (first, second):
            token = {"Authorization": f"Bearer {login['access_token']}", **host("alpha")}
            answers = [await world.client.get("/auth/me", headers=token) for _ in range(3)]
            assert [r.status_code for r in answers] == [200, 200, 429]
            refused(answers[2], "user")


async def test_the_limits_file_is_validated() -> None:
    bad = "requestsPerMinute: {perApiKey: -1, perFoo: 2}\nauth: 3\nextra: {}\n"
    with pytest.raises(PublishError) as caught:
        compile_release(demo_files() | {"config/limits.yaml": bad}, connections=None)
    messages = [d["message"] for d in caught.value.details]
    assert any("perApiKey must be an integer from 0" in m for m in messages)
    assert any("unknown key 'perFoo'" in m for m in messages)
    assert any("`auth` must be a mapping" in m for m in messages)
    assert any("unknown key 'extra'" in m for m in messages)
    # Without the file the release is what it was (same id): nothing changes for old projects.
    plain = compile_release(demo_files(), connections=None)
    assert "limits" not in plain.doc


@pytest.fixture
async def auth(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """The auth scenario with 2 free failures per email and `param` per address."""
    settings: dict[str, Any] = {"auth_free_failures_per_email": 2}
    settings["auth_free_failures_per_address"] = request.param
    async with auth_world(tmp_path, **settings) as world:
        yield world


@pytest.mark.parametrize("auth", [20], indirect=True)
async def test_failed_logins_back_off_per_email_growing(auth: World) -> None:
    email = new_email()
    assert (await auth.signup(email)).status_code == 201
    wrong = [(await auth.login(email, "wrong-password")).status_code for _ in range(3)]
    assert wrong == [401, 401, 401]  # the third failure is past the free two: 1 s back-off
    blocked = await auth.login(email)  # even the right password waits: no hash is spent
    assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "1"
    await asyncio.sleep(1.1)
    assert (await auth.login(email, "wrong-password")).status_code == 401  # 4th: 2 s now
    blocked = await auth.login(email)
    assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "2"
    await asyncio.sleep(2.1)
    assert (await auth.login(email)).status_code == 200  # a success forgets the failures
    assert (await auth.login(email, "wrong-password")).status_code == 401
    assert (await auth.login(email)).status_code == 200
    # Another email of the same tenant, or the same email on another tenant, is unaffected.
    assert (await auth.login(new_email(), "wrong-password", project="beta")).status_code == 401


@pytest.mark.parametrize("auth", [4], indirect=True)
async def test_failed_logins_back_off_per_address_across_emails(auth: World) -> None:
    statuses = [
        (await auth.login(new_email(), "wrong-password", project="beta")).status_code
        for _ in range(6)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    # Signups answering "taken" count as failures too.
    r = await auth.signup(new_email(), project="beta")
    assert r.status_code == 429


async def test_the_back_off_and_the_rates_are_shared_through_redis(redis_url: str) -> None:
    """Two replicas (two stores on one Redis) see one count; Redis's clock decides."""
    stores = [SharedStore(redis_url), SharedStore(redis_url)]
    try:
        first, second = (AuthThrottle(s, cap_seconds=900, window_seconds=900) for s in stores)
        keys = ["stk:af:shop:prod:e:x"]
        await first.failed(keys, [1])
        assert await second.wait(keys) == 0
        await second.failed(keys, [1])
        assert 0.5 < await first.wait(keys) <= 1
        await first.clear(keys)
        assert await second.wait(keys) == 0
        rates = [Rate("key", "k:shop:prod:k1", 2)]
        one, two = RateLimiter(stores[0]), RateLimiter(stores[1])
        assert allowed(await one.check(rates)) and allowed(await two.check(rates))
        assert not allowed(await one.check(rates))
        assert first._local == {} and one._local == {}  # nothing fell back
    finally:
        for store in stores:
            await store.close()


async def test_in_process_rates_answer_every_bucket_and_record_only_admitted_requests() -> None:
    """Without Redis: each request's results name every rate it met (the headers), and a
    request refused by one bucket is recorded in none (GCRA, `docs/api.md`)."""
    limiter = RateLimiter(SharedStore(None))
    # 6 a minute: one unit every 10 s, so the counts below hold however slowly the test runs.
    rates = [Rate("tenant", "t:shop:prod", 6), Rate("key", "k:shop:prod:k1", 2)]
    first, second, third = [await limiter.check(rates) for _ in range(3)]
    assert allowed(first) and allowed(second) and not allowed(third)
    assert [(r.name, r.quota, r.remaining) for r in results(first)] == [
        ("tenant", 6, 5),
        ("key", 2, 1),
    ]
    assert [r.remaining for r in results(second)] == [4, 0]
    assert third[2] >= 1 and [r.remaining for r in results(third)] == [4, 0]
    # The refused request took nothing from the tenant's bucket.
    tenant_only = await limiter.check([rates[0]])
    assert allowed(tenant_only) and results(tenant_only)[0].remaining == 3


async def test_the_headers_name_every_bucket_in_order_admitted_or_refused() -> None:
    """`RateLimit-Policy` and `RateLimit` as a request's `Buckets` hold them (derived once per
    caller, `docs/decisions.md`, limits), its counts filled in: one item per rate, in order."""
    limiter = RateLimiter(SharedStore(None))
    rates = [Rate("tenant", "t:shop:prod", 6), Rate("key", "k:shop:prod:k1", 2)]
    states = [await limiter.check(rates) for _ in range(3)]
    policy = b'"tenant";q=6;w=60, "key";q=2;w=60'
    currents = [
        b'"tenant";r=5;t=10, "key";r=1;t=30',
        b'"tenant";r=4;t=20, "key";r=0;t=60',
        b'"tenant";r=4;t=20, "key";r=0;t=60',  # refused: nothing recorded
    ]
    assert [rate_headers(state) for state in states] == [
        [(b"ratelimit-policy", policy), (b"ratelimit", current)] for current in currents
    ]
    assert [state[2] for state in states] == [0, 0, 30]
