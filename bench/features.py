"""CPU that each feature on the request path adds to one S1 request (issue 12: each at most 3 % of
S1's CPU per request), all measured in one process, alternating rounds, medians printed.

    .venv/bin/python -m bench.features [--requests 5000] [--rounds 5] [--iterations 20000]
                                       [--no-redis] [--profile TEXT]

S1 (`logics/items/get`, API key) runs through the real app as `bench.profile_call` drives it
(throwaway PostgreSQL database seeded like the bench's, SQLite registry, ASGI without HTTP).

- End to end: S1 through tenants that differ only in their limits (`config/limits.yaml`, the
  admin `requestsPerMinute`; each limit 1,000,000 a minute: never refused), counted in this
  process (no Redis, the default) and through Redis (`STK_REDIS_URL`, opt-in: a second app on
  `STK_TEST_REDIS_URL` or the local Redis, under a fresh key prefix); a browser's S1
  (`Origin` allowed: the origin gate and the CORS headers); S8's `upload_sign` (storage, its
  own request). Each is set against S1 in the same app, round by round.
- In a loop: the exact calls one S1 request makes to each feature, with the objects a real
  request left on its state (tenant, release, caches), as many times as the request makes them.

Figures, not assertions: recorded in `bench/RESULTS.md` ("Per-feature cost").
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import os
import pstats
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bench.profile_call import (
    S1_BODY,
    database,
    one,
    register,
    request_headers,
    serving,
    upload_sign_body,
)
from bridge.app import App
from bridge.context import header_map
from bridge.cors import Cors, CorsMiddleware
from bridge.guard import HeaderLimits, screen
from bridge.metrics import route_kind
from bridge.middleware import rate_headers
from tenancy.breaker import Breaker
from tenancy.cache import Cache
from tenancy.calls import RequestState, origin_allowed
from tenancy.limits import Buckets, allowed

REDIS = os.environ.get("STK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ORIGIN = "https://app.example.com"
BATCH = 20  # requests of one call in a row, end to end
NEVER = 1_000_000  # a limit per minute no run reaches (GCRA: one request per 60 µs)
AUTH_YAML = (
    "signup: {enabled: true, roles: []}\n"
    "tokens: {accessTtlSeconds: 3600, refreshTtlSeconds: 86400}\n"
    f"cors: {{origins: ['{ORIGIN}']}}\n"
)
# Tenants: (admin limits, config/limits.yaml). Every one allows the browser's origin.
TENANTS: dict[str, tuple[dict[str, int] | None, str | None]] = {
    "shop": (None, None),
    "plain": (None, None),  # a second unlimited tenant: the control
    "keyed": (None, f"requestsPerMinute: {{perApiKey: {NEVER}}}\n"),
    "every": (
        {"requestsPerMinute": NEVER},
        f"requestsPerMinute: {{perApiKey: {NEVER}, perAddress: {NEVER}}}\n",
    ),
}
# What a browser sends with a `fetch` from another origin, besides the request's own headers.
BROWSER: list[tuple[bytes, bytes]] = [
    (b"origin", ORIGIN.encode()),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari"),
    (b"accept", b"*/*"),
    (b"accept-language", b"en-US,en;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"referer", ORIGIN.encode() + b"/"),
    (b"sec-fetch-mode", b"cors"),
    (b"sec-fetch-site", b"cross-site"),
    (b"sec-fetch-dest", b"empty"),
    (b"connection", b"keep-alive"),
]


@dataclass
class Call:
    """One kind of `/call` through one app: `base` names the S1 it is set against."""

    name: str
    app: App
    headers: list[tuple[bytes, bytes]]
    body: bytes
    base: str | None = None
    own: bool = False  # a request of its own, not S1 with a feature: printed as a ratio to base


@dataclass
class Loop:
    """The calls one S1 request makes to a feature (`calls`: how many, where), run `n` times."""

    name: str
    calls: str
    run: Callable[[int], Awaitable[None]]
    base: str | None = None  # a loop of the same calls without the feature: the feature's cost


@dataclass
class World:
    """One app with its tenants registered: each tenant's API-key headers, and the state a
    warm S1 (and a browser's S1) of `shop` left."""

    app: App
    headers: dict[str, list[tuple[bytes, bytes]]]
    key_id: str  # `shop`'s
    scopes: dict[str, dict[str, Any]]  # each tenant's last warm S1, its `stk` state filled
    browser: dict[str, Any]

    @property
    def s1(self) -> dict[str, Any]:
        return self.scopes["shop"]


async def world(app: App, url: str) -> World:
    headers, key_ids = {}, []
    for project, (limits, limits_yaml) in TENANTS.items():
        files = {"config/auth.yaml": AUTH_YAML}
        if limits_yaml is not None:
            files["config/limits.yaml"] = limits_yaml
        key, key_id = await register(app, url, project, files, limits)
        headers[project] = request_headers((b"x-santokit-api-key", key.encode()), S1_BODY, project)
        key_ids.append(key_id)
    scopes = {}
    for _ in range(300):  # warm: pools open, statements prepared, caches filled
        for project, each in headers.items():
            scopes[project] = await one(app, each, S1_BODY)
    browser = await one(app, [*headers["shop"], *BROWSER], S1_BODY)
    return World(app, headers, key_ids[0], scopes, browser)


def calls(local: World, shared: World | None) -> list[Call]:
    """S1 and its variants, end to end: per app, S1 first (the base of the others)."""
    found = [
        Call("S1", local.app, local.headers["shop"], S1_BODY),
        Call(
            "control: S1 of a second unlimited tenant",
            local.app,
            local.headers["plain"],
            S1_BODY,
            "S1",
        ),
        Call("limits in process: per key", local.app, local.headers["keyed"], S1_BODY, "S1"),
        Call(
            "limits in process: tenant + key + address",
            local.app,
            local.headers["every"],
            S1_BODY,
            "S1",
        ),
        Call("browser S1 (origin gate + CORS)", local.app, local.browser["headers"], S1_BODY, "S1"),
        Call(
            "S8 upload_sign (storage, its own request)",
            local.app,
            local.headers["shop"],
            upload_sign_body(local.key_id),
            "S1",
            own=True,
        ),
    ]
    if shared is not None:
        base = "S1 (app with STK_REDIS_URL)"
        found += [
            Call(base, shared.app, shared.headers["shop"], S1_BODY),
            Call("limits on Redis: per key", shared.app, shared.headers["keyed"], S1_BODY, base),
            Call(
                "limits on Redis: tenant + key + address",
                shared.app,
                shared.headers["every"],
                S1_BODY,
                base,
            ),
        ]
    return found


def loops(local: World, shared: World | None) -> list[Loop]:
    """Each feature's calls as one S1 request makes them (`tenancy/calls.py` `admit`/`call`,
    `bridge/middleware.py`, `bridge/app.py` `_observer`), on what a real request left."""
    rt = local.app.runtime
    s1, browser = local.s1, local.browser
    req: RequestState = s1["stk"]
    assert req.resolved is not None and req.release is not None
    tenant, principal, project = req.resolved.tenant, req.resolved.principal, req.resolved.project
    release, address = req.release, s1["client"][0]
    limits = HeaderLimits.of(rt.settings)
    headers, index = s1["headers"], header_map(s1)
    browser_headers, browser_index = browser["headers"], header_map(browser)
    cors = Cors(local.app.state)
    rows = [{"id": 42, "name": "item 42"}]

    async def usage(n: int) -> None:
        # `tenancy/calls.call` times the kind and counts its result; the observer counts the
        # answer (`bridge/app.py`).
        use = rt.usage
        for _ in range(n):
            began = time.perf_counter()
            use.call(tenant, "logics", "", rows, time.perf_counter() - began)
            if req.resolved is not None:
                use.request(tenant, route_kind(req, "/call"), 200, 47, 120)

    async def key_use(n: int) -> None:
        touch = rt.key_usage.touch
        for _ in range(n):
            touch(principal.sub)

    async def unlimited(n: int) -> None:
        admit = rt.limits.admit
        for _ in range(n):
            assert admit(tenant, project.limits, release.limits, principal, address) is None

    def limited(world: World, name: str) -> Callable[[int], Awaitable[None]]:
        """`name`'s limits as its own warm S1 met them, in `world`'s app."""
        state: RequestState = world.scopes[name]["stk"]
        assert state.resolved is not None and state.release is not None
        me, caller, record = state.resolved.tenant, state.resolved.principal, state.resolved.project
        admit, caller_limits = world.app.runtime.limits.admit, state.release.limits
        ask = world.app.runtime.limits.rate.ask

        async def run(n: int) -> None:
            for _ in range(n):
                rate = admit(me, record.limits, caller_limits, caller, address)
                if isinstance(rate, Buckets):  # as `calls.admit`: Redis when no lease is held
                    rate = await ask(rate)
                assert rate is not None and allowed(rate)
                rate_headers(rate)  # the middleware's `RateLimit` headers

        return run

    async def slot(n: int) -> None:
        take = rt.limits.slot
        for _ in range(n):
            with take(tenant, project.limits):
                pass

    lookups = breaker_lookups(local)

    async def breakers(n: int) -> None:
        await lookups(n, True)

    async def no_breakers(n: int) -> None:
        await lookups(n, False)

    async def redis_breaker(n: int) -> None:
        breaker = Breaker.for_dependency()
        for _ in range(n):
            if breaker.allow():
                breaker.success()

    async def origin_gate(n: int) -> None:
        origin: str | None = ORIGIN
        for _ in range(n):
            if origin is not None and not origin_allowed(release.cors_origins, origin):
                raise AssertionError("origin refused")

    async def cors_headers(n: int) -> None:
        for _ in range(n):
            browser.pop("stk_origins", None)  # found once per request (`Cors.origins`)
            assert len(await cors.headers(browser, judge=True)) == 3

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        return None

    gate = CorsMiddleware(inner, cors)

    async def cors_gate(n: int) -> None:
        for _ in range(n):
            await gate(s1, receive, send)

    async def screened(n: int) -> None:
        for _ in range(n):
            assert screen(headers, index, limits, counted=True) is None

    async def screened_browser(n: int) -> None:
        for _ in range(n):
            assert screen(browser_headers, browser_index, limits, counted=False) is None

    found = [
        Loop("usage metering", "1 Usage.call + 1 Usage.request (+ 2 clock reads)", usage),
        Loop("API key last use", "1 KeyUsage.touch (a write at most once a minute)", key_use),
        Loop("rate limits, none set (default)", "1 Limiters.admit → None", unlimited),
        Loop(
            "rate limits in process: per key",
            "1 Limiters.admit + RateLimit headers",
            limited(local, "keyed"),
        ),
        Loop(
            "rate limits in process: tenant + key + address",
            "1 Limiters.admit (3 buckets) + RateLimit headers",
            limited(local, "every"),
        ),
        Loop("concurrency slot (I7)", "1 Limiters.slot enter + exit", slot),
        Loop("5 cached lookups, no policy", "5 Cache.get hits (twins, no policy)", no_breakers),
        Loop(
            "breakers: stale-on-error policy on those hits",
            "5 Cache.get hits (project, key, manifest, release, connection)",
            breakers,
            "5 cached lookups, no policy",
        ),
        Loop("Redis breaker (limits on Redis only)", "1 allow + success", redis_breaker),
        Loop("origin gate (browser request)", "1 origin_allowed", origin_gate),
        Loop("CORS headers (browser request)", "1 Cors.headers", cors_headers),
        Loop("CORS gate (every data-plane request)", "1 CorsMiddleware pass", cors_gate),
        Loop("header screen, stk-bridge serve", "1 screen(counted=True)", screened),
        Loop(
            "header screen, other servers, browser headers",
            "1 screen(counted=False), 14 headers",
            screened_browser,
        ),
    ]
    if shared is not None:
        found += [
            Loop(
                "rate limits on Redis: per key",
                "1 Limiters.admit (1 Lua call) + RateLimit headers",
                limited(shared, "keyed"),
            ),
            Loop(
                "rate limits on Redis: tenant + key + address",
                "1 Limiters.admit (1 Lua call, 3 keys) + RateLimit headers",
                limited(shared, "every"),
            ),
        ]
    return found


def breaker_lookups(local: World) -> Callable[[int, bool], Awaitable[None]]:
    """The 5 cached lookups of a warm S1 request (`tenancy/resolution.py` locate + resolve,
    `Directory.release`, `Directory.connection`), on the directory's caches (their registry and
    KV policies: stale-on-error behind a breaker) or on twins without a policy."""
    directory = local.app.runtime.directory
    req: RequestState = local.s1["stk"]
    assert req.resolved is not None and req.release is not None
    tenant = req.resolved.tenant
    keys: list[tuple[Cache[Any], tuple[str, ...]]] = [
        (directory.projects, (tenant.project,)),
        (directory.api_keys, ("*key*", local.key_id)),
        (directory.manifests, (tenant.project,)),
        (directory.releases, (tenant.project, req.release.id)),
        (directory.connections, (tenant.project, tenant.env, "main")),
    ]
    Loader = Callable[[], Awaitable[Any]]
    real: list[tuple[Cache[Any], tuple[str, ...], Loader]] = []
    twins: list[tuple[Cache[Any], tuple[str, ...], Loader]] = []
    for cache, key in keys:
        value = cache.peek(key)
        assert value is not None, cache.name

        async def load(value: Any = value) -> Any:  # a reload past the TTL: the same value
            return value

        # The same TTL (so the same hit path: a reorder only without one), no policy.
        twin: Cache[Any] = Cache(cache.name, cache.ttl if cache.ttl != math.inf else None)
        twin.put(key, value)
        real.append((cache, key, load))
        twins.append((twin, key, load))

    async def run(n: int, policy: bool) -> None:
        lookups = real if policy else twins
        for _ in range(n):
            for cache, key, load in lookups:
                await cache.get(key, load)

    return run


async def measure(
    calls: list[Call], loops: list[Loop], requests: int, rounds: int, n: int, profile: str | None
) -> None:
    """Every call and loop once per round, in turn; `profile`: cProfile the calls and loops whose
    name contains it (their figures then include the profiler's overhead)."""
    profiler = cProfile.Profile()
    per_call: dict[str, list[float]] = {c.name: [] for c in calls}
    per_loop: dict[str, list[float]] = {loop.name: [] for loop in loops}
    batches = max(1, requests // rounds // BATCH)
    shuffle = random.Random(12).shuffle  # the same orders every run
    for _ in range(rounds):
        used = dict.fromkeys(per_call, 0.0)
        for _ in range(batches):
            # Interleaved, in a new order each turn: all meet the same machine, and none always
            # follows the same call (a rotation kept S1 right after S8's storage call every
            # turn, so what one neighbour left in the CPU's caches weighed on every difference).
            order = calls[:]
            shuffle(order)
            for c in order:
                watch = profile is not None and profile in c.name
                began = time.process_time()
                if watch:
                    profiler.enable()
                for _ in range(BATCH):
                    await one(c.app, c.headers, c.body)
                if watch:
                    profiler.disable()
                used[c.name] += time.process_time() - began
        for name, seconds in used.items():
            per_call[name].append(seconds / (batches * BATCH) * 1e6)
        for loop in loops:
            watch = profile is not None and profile in loop.name
            began = time.process_time()
            if watch:
                profiler.enable()
            await loop.run(n)
            if watch:
                profiler.disable()
            per_loop[loop.name].append((time.process_time() - began) / n * 1e6)
    s1 = statistics.median(per_call["S1"])
    print(
        f"\nEnd to end, {batches * BATCH * rounds} requests each in batches of {BATCH}, "
        f"interleaved, {rounds} rounds (medians):"
    )
    print(f"{'call':<44} {'µs/request':>10} {'added µs':>9} {'% of S1':>8}   (added, by round)")
    for c in calls:
        spent = statistics.median(per_call[c.name])
        if c.base is None:
            print(f"{c.name:<44} {spent:10.1f}")
            continue
        if c.own:
            ratios = [x / b for x, b in zip(per_call[c.name], per_call[c.base], strict=True)]
            print(f"{c.name:<44} {spent:10.1f}   {statistics.median(ratios):.2f}x {c.base}")
            continue
        rounds_added = [x - b for x, b in zip(per_call[c.name], per_call[c.base], strict=True)]
        added = statistics.median(rounds_added)
        base = statistics.median(per_call[c.base])
        each = " ".join(f"{x:.0f}" for x in rounds_added)
        print(f"{c.name:<44} {spent:10.1f} {added:9.1f} {100 * added / base:7.1f} %   ({each})")
    print(
        f"\nIn a loop, {n} requests' calls each, {rounds} rounds (medians), against S1's {s1:.1f}:"
    )
    print(f"{'feature':<48} {'calls per S1 request':<60} {'µs/request':>10} {'% of S1':>8}")
    for loop in loops:
        spent = statistics.median(per_loop[loop.name])
        if loop.base is not None:  # the part the feature adds to calls made anyway
            pairs = zip(per_loop[loop.name], per_loop[loop.base], strict=True)
            spent = statistics.median([x - b for x, b in pairs])
        print(f"{loop.name:<48} {loop.calls:<60} {spent:10.2f} {100 * spent / s1:7.2f} %")
    if profile is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


async def main(
    requests: int, rounds: int, iterations: int, use_redis: bool, profile: str | None
) -> None:
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    prefix = f"stkfeatures:{uuid.uuid4().hex[:8]}:"
    async with database() as url, serving() as local_app:
        local = await world(local_app, url)
        if not use_redis:
            chosen = calls(local, None), loops(local, None)
            await measure(*chosen, requests, rounds, iterations, profile)
        else:
            try:
                async with serving(redis_url=f"{REDIS}?prefix={prefix}") as shared_app:
                    shared = await world(shared_app, url)
                    chosen = calls(local, shared), loops(local, shared)
                    await measure(*chosen, requests, rounds, iterations, profile)
            finally:
                client = aioredis.from_url(REDIS)
                stale = [key async for key in client.scan_iter(match=f"{prefix}*")]
                if stale:
                    await client.delete(*stale)
                await client.aclose()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="per end-to-end call")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20000, help="per loop and round")
    parser.add_argument("--no-redis", action="store_true", help="without the Redis variants")
    parser.add_argument("--profile", metavar="TEXT", help="cProfile what is named with TEXT")
    args = parser.parse_args()
    use_redis = not args.no_redis
    asyncio.run(main(args.requests, args.rounds, args.iterations, use_redis, args.profile))
