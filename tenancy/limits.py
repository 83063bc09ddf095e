"""Request limits: a project's typed `Limits` and every limiter enforcing them (`docs/admin.md`
limits, `docs/tenancy.md` I7, `docs/api.md` pipeline step 5).

One home on purpose: a new limit (per API key, user or address; a CPU bulkhead) is a field of
`Limits` and a check in `Limiters`, and admission keeps calling the same two methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from math import ceil
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import redis.asyncio as aioredis

from tenancy.breaker import Breaker
from tenancy.cache import Cache
from tenancy.errors import BadRequest, ServiceUnavailable, TooManyRequests
from tenancy.principal import Principal, Tenant
from tenancy.redis_url import RedisOptions, connect

log = logging.getLogger("stk.limits")

T = TypeVar("T")
LIMIT_MAX = 1_000_000
WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Limits:
    """A project's `limits`; `None` means unset (the process-wide setting applies)."""

    max_pool_size: int | None = None
    statement_timeout_ms: int | None = None
    max_concurrency: int | None = None
    requests_per_minute: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Limits:
        """The admin API's JSON form (`{"maxPoolSize": 5, ...}`), checked: 400 on anything else."""
        unknown = set(raw) - set(_FIELDS)
        if unknown:
            raise BadRequest(f"Unknown limit: {sorted(unknown)[0]}")
        for key, value in raw.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= LIMIT_MAX:
                raise BadRequest(f"Limit {key} must be an integer between 1 and {LIMIT_MAX}")
        return cls(**{_FIELDS[key]: value for key, value in raw.items()})

    def to_json(self) -> dict[str, int]:
        """The JSON form, set limits only: what the registry stores and the admin API shows."""
        values = {key: getattr(self, name) for key, name in _FIELDS.items()}
        return {key: value for key, value in values.items() if value is not None}


_FIELDS = {
    "maxPoolSize": "max_pool_size",
    "statementTimeoutMs": "statement_timeout_ms",
    "maxConcurrency": "max_concurrency",
    "requestsPerMinute": "requests_per_minute",
}


@dataclass(frozen=True, slots=True)
class CallerLimits:
    """Limits beyond the tenant, per release (`config/limits.yaml`, `docs/project-files.md`);
    `None` means unset (the process-wide setting applies), 0 turns one off.

    Rates are requests per minute per API key, per end user and per client address, each within
    the tenant env; the auth numbers are the failed attempts per email and per address after
    which `/auth/login` and `/auth/signup` back off.
    """

    per_api_key: int | None = None
    per_user: int | None = None
    per_address: int | None = None
    free_failures_per_email: int | None = None
    free_failures_per_address: int | None = None

    @classmethod
    def from_compiled(cls, doc: Mapping[str, Any] | None) -> CallerLimits:
        doc = doc or {}
        rates, auth = doc.get("requestsPerMinute", {}), doc.get("auth", {})
        return cls(
            rates.get("perApiKey"),
            rates.get("perUser"),
            rates.get("perAddress"),
            auth.get("freeFailuresPerEmail"),
            auth.get("freeFailuresPerAddress"),
        )

    def over(self, defaults: CallerLimits) -> CallerLimits:
        """These values, each unset one taken from `defaults` (the settings)."""
        return CallerLimits(
            *(
                mine if mine is not None else default
                for mine, default in zip(_values(self), _values(defaults), strict=True)
            )
        )


def _values(limits: CallerLimits) -> tuple[int | None, ...]:
    return (
        limits.per_api_key,
        limits.per_user,
        limits.per_address,
        limits.free_failures_per_email,
        limits.free_failures_per_address,
    )


class Limiters:
    """Every limiter, owned by the `Runtime`: `admit` counts a request once it is admitted to a
    tenant (429), `slot` is held while it works (503), `hashing` bounds password hashes,
    `auth_guard` throttles failed sign-ins."""

    def __init__(
        self,
        redis_url: str | None,
        max_concurrency: int,
        hashing: HashBulkhead | None = None,
        defaults: CallerLimits | None = None,
        backoff_max_seconds: int = 900,
        failure_window_seconds: int = 900,
        *,
        redis: RedisOptions | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.store = SharedStore(redis_url, options=redis, breaker=breaker)
        self.rate = RateLimiter(self.store)
        self.auth = AuthThrottle(self.store, backoff_max_seconds, failure_window_seconds)
        self.concurrency = ConcurrencyLimiter()
        self.hashing = hashing or HashBulkhead()
        self.defaults = (defaults or CallerLimits()).over(
            CallerLimits(0, 0, 0, DEFAULT_FREE_PER_EMAIL, DEFAULT_FREE_PER_ADDRESS)
        )
        self._max_concurrency = max_concurrency
        defaults = self.defaults
        self._rates_by_default = bool(
            defaults.per_api_key or defaults.per_user or defaults.per_address
        )
        self._by_address = bool(defaults.per_address)
        # A caller's buckets, asked for on each of its requests and derived from objects a new
        # release or project record replaces: an entry keeps the limits it was derived from
        # and is derived again once they are other objects (`docs/decisions.md`, limits).
        self.buckets: Cache[Buckets] = Cache("rate_buckets", None, max_entries=_BUCKETS_MAX)

    def admit(
        self,
        tenant: Tenant,
        limits: Limits,
        caller: CallerLimits,
        principal: Principal,
        address: str,
    ) -> RateState | Buckets | None:
        """Every rate that applies to this request, checked in one step: None when none applies,
        so unlimited tenants pay nothing; the counts when this process could count the request
        (no Redis, or a lease held here: nearly every request); else the caller's `Buckets`, for
        one Redis call (`RateLimiter.ask`). Not a coroutine: it runs on every request of a
        limited tenant, and a coroutine's creation and await were a twentieth of what the limit
        adds to it (`docs/decisions.md`, limits).

        The buckets (names, rates, header values) and the merged limits are derived once per
        (tenant, caller, address when it is limited), not per request, and again only when the
        release's or the project's limits are other objects: a new release, a changed record."""
        if not (
            limits.requests_per_minute
            or caller.per_api_key
            or caller.per_user
            or caller.per_address
            or self._rates_by_default
        ):
            return None
        # The address is part of the key whenever an address limit may apply (the release's,
        # or the settings' unless the release's 0 turns it off: then its callers' buckets are
        # the same under each address, only kept once per address).
        key = (
            tenant.project,
            tenant.env,
            principal.type,
            principal.sub,
            address if caller.per_address or self._by_address else "",
        )
        buckets = self.buckets.peek(key)  # never stale: derived here, checked below
        if buckets is None or buckets.limits is not limits or buckets.caller is not caller:
            mine = caller.over(self.defaults)
            buckets = _buckets_of(tenant, limits, caller, mine, principal, address)
            self.buckets.put(key, buckets)
            self.rate.derived()
        if not buckets.rates:
            return None
        return self.rate.spend(buckets) or buckets

    def auth_guard(self, tenant: Tenant, caller: CallerLimits, address: str) -> AuthGuard:
        mine = caller.over(self.defaults)  # a sign-in hashes a password: merging is nothing
        return AuthGuard(
            self.auth,
            f"{tenant.project}:{tenant.env}",
            address,
            mine.free_failures_per_email or 0,
            mine.free_failures_per_address or 0,
        )

    def slot(self, tenant: Tenant, limits: Limits) -> Slot:
        return self.concurrency.slot(tenant, limits.max_concurrency or self._max_concurrency)

    async def close(self) -> None:
        await self.store.close()
        self.hashing.close()


# Callers whose buckets are kept (each entry a few hundred bytes): past them the least recently
# used one is derived again on its next request.
_BUCKETS_MAX = 16_384


def _buckets_of(
    tenant: Tenant,
    limits: Limits,
    caller: CallerLimits,
    mine: CallerLimits,
    principal: Principal,
    address: str,
) -> Buckets:
    """The rates a request of `principal` (from `address`) meets: `limits` (the project's) and
    `mine` (`caller`, the release's, over the defaults)."""
    rates = []
    scope = f"{tenant.project}:{tenant.env}"
    if limits.requests_per_minute:
        rates.append(Rate("tenant", f"t:{scope}", limits.requests_per_minute))
    if mine.per_api_key and principal.type == "api_key":
        rates.append(Rate("key", f"k:{scope}:{principal.sub}", mine.per_api_key))
    if mine.per_user and principal.type == "user":
        rates.append(Rate("user", f"u:{scope}:{principal.sub}", mine.per_user))
    if mine.per_address and address:
        rates.append(Rate("address", f"a:{scope}:{address}", mine.per_address))
    return Buckets.of(rates, limits, caller)


DEFAULT_FREE_PER_EMAIL = 5
DEFAULT_FREE_PER_ADDRESS = 20


class SharedStore:
    """The Redis the limiters share across replicas (`STK_REDIS_URL`), or none. Each call falls
    back to this process's own count when Redis does not answer: a limit degrades to
    per-replica rather than refusing or admitting everything (`docs/tenancy.md`).

    The client is built by `tenancy.redis_url.connect` (timeouts, retry, health checks) and
    Redis is behind a circuit breaker: once it failed `threshold` times in a row, every limiter
    counts in this process at once for the breaker's window instead of each call paying Redis's
    timeout; the fallback is logged when the breaker opens, not per request.
    """

    def __init__(
        self,
        redis_url: str | None,
        *,
        options: RedisOptions | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.redis: aioredis.Redis | None = None
        self.prefix = ""
        if redis_url:
            client = connect(redis_url, options or RedisOptions())
            self.redis, self.prefix = client.client, client.prefix
        self.breaker = breaker or Breaker.for_dependency()

    def script(self, source: str) -> Any:
        return self.redis.register_script(source) if self.redis is not None else None

    async def run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """The script's answer, or None when Redis is absent, unreachable or its breaker open."""
        if script is None or not self.breaker.allow():
            return None
        try:
            answer = await script(keys=[self.prefix + k for k in keys], args=args)
        except BaseException as exc:  # a cancelled call counts as a failure (`Breaker`)
            trips = self.breaker.trips
            self.breaker.failure()
            if not isinstance(exc, OSError | aioredis.RedisError):
                raise
            if self.breaker.trips != trips:  # once per opening, not per request
                log.warning("limit store unreachable; counting in this process")
            return None
        self.breaker.success()
        return answer

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class Rate(NamedTuple):
    """One limit on one request: `per_minute` for bucket `key` (policy `name` in headers)."""

    name: str
    key: str
    per_minute: int


@dataclass(frozen=True, slots=True)
class Buckets:
    """The rates of a request and what checking and answering them needs, derived from the
    rates alone: built once per caller (`Limiters.admit`), so an admitted request computes
    only its counts (`docs/decisions.md`, limits)."""

    rates: tuple[Rate, ...]
    keys: tuple[str, ...]  # each rate's bucket
    # Each rate's bucket, its seconds per unit, and the counts of a request that finds the
    # bucket full (idle: nearly every request of a caller under its rate), known in advance.
    steps: tuple[tuple[str, float, tuple[int, int]], ...]
    policy: tuple[bytes, bytes]  # the `RateLimit-Policy` header (`docs/api.md`), as sent
    current: bytes  # the `RateLimit` value, a `%` template over a `RateState`'s counts
    limits: Limits | None = None  # the project's and the release's limits it was derived from
    caller: CallerLimits | None = None

    @classmethod
    def of(
        cls,
        rates: list[Rate],
        limits: Limits | None = None,
        caller: CallerLimits | None = None,
    ) -> Buckets:
        """One list item per rate in both headers (draft-ietf-httpapi-ratelimit-headers)."""
        policy = ", ".join(f'"{r.name}";q={r.per_minute};w={WINDOW_SECONDS}' for r in rates)
        current = ", ".join(f'"{r.name}";r=%d;t=%d' for r in rates)
        return cls(
            tuple(rates),
            tuple(rate.key for rate in rates),
            tuple(_step(rate) for rate in rates),
            (b"ratelimit-policy", policy.encode()),
            current.encode(),
            limits,
            caller,
        )


def _step(rate: Rate) -> tuple[str, float, tuple[int, int]]:
    """A rate's bucket, its interval, and what `_locally` answers when the bucket is full: one
    interval ahead, the quota less one remaining, whole again in `ceil(interval)` seconds."""
    interval = WINDOW_SECONDS / rate.per_minute
    return rate.key, interval, (rate.per_minute - 1, ceil(interval))


class RateResult(NamedTuple):
    name: str
    quota: int
    remaining: int
    reset: int  # seconds until the whole quota is available again


# What the rates said about one request: the caller's `Buckets` (the `RateLimit-Policy` /
# `RateLimit` headers, `docs/api.md`), each rate's remaining quota and reset in turn (whole
# numbers), and how long to wait (0: admitted). Made for every limited request, so a plain tuple:
# a named tuple's instance costs five times as much to build (`docs/decisions.md`, hot path).
RateState = tuple["Buckets", tuple[float, ...], int]


def allowed(state: RateState) -> bool:
    return state[2] == 0


def results(state: RateState) -> tuple[RateResult, ...]:
    """Each rate's figures, by name: for tests and tools, never on the request path."""
    buckets, counts, _ = state
    return tuple(
        RateResult(rate.name, rate.per_minute, int(counts[2 * i]), int(counts[2 * i + 1]))
        for i, rate in enumerate(buckets.rates)
    )


# TATs are floats: sums of intervals round, and Redis answers them to the microsecond (as text,
# of doubles whose step at today's epoch seconds is a quarter of one: together up to ~1.4 µs
# off). A count computed from one is given ten microseconds of slack, so rounding never costs a
# caller a unit it has (a `RateLimit` of 7 where 8 remain); at worst a unit is counted that
# much before it returns.
_SLACK = 1e-5
_HORIZON = WINDOW_SECONDS + _SLACK

# GCRA over every bucket of a request at once, on Redis's clock: all admitted (and recorded)
# or none. A bucket holds its theoretical arrival time (TAT); a request is admitted when the new
# TAT is at most one period ahead of now, which allows a burst of `per_minute` and then one
# request every 60/per_minute seconds. ARGV: each key's interval, then the units this replica
# asks for each (its lease, `RateLimiter`), then the period; each key is granted as many of the
# units asked as fit (at least one, or the request is refused and nothing is recorded).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = #KEYS
local period = tonumber(ARGV[2 * n + 1])
local tats, fits = {}, {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  tats[i] = tat
  fits[i] = math.floor((now + period - tat) / tonumber(ARGV[i]) + 1e-9)
  if fits[i] < 1 then allowed = 0 end
end
local out = {allowed, string.format('%.6f', now)}
for i, key in ipairs(KEYS) do
  local interval, granted = tonumber(ARGV[i]), 0
  if allowed == 1 then
    granted = math.min(fits[i], tonumber(ARGV[n + i]))
    tats[i] = tats[i] + granted * interval
    redis.call('SET', key, string.format('%.6f', tats[i]), 'PX', math.ceil((tats[i] - now) * 1000))
  else
    tats[i] = tats[i] + interval
  end
  out[#out + 1] = string.format('%.6f', tats[i])
  out[#out + 1] = granted
end
return out
"""
_LOCAL_MAX = 100_000
# How much of a bucket's rate one replica may take from Redis at once (`docs/tenancy.md`).
LEASE_SECONDS = 1.0


@dataclass(slots=True)
class _Lease:
    """Units of one bucket granted to this replica by Redis, spent here until `expires`."""

    units: int  # left to spend
    size: int  # granted
    began: float  # this process's monotonic clock
    expires: float
    remaining: int  # the bucket's remaining quota once every granted unit is spent
    reset: int


class RateLimiter:
    """GCRA per bucket (smooth: no window edge lets twice the rate through), shared by every
    replica through Redis, or counted in this process when Redis is absent or down.

    A Redis call costs more CPU than the rest of a request, so a busy bucket's units are leased
    (`docs/decisions.md`, limits): one script call grants this replica up to `LEASE_SECONDS` of
    the bucket's recent demand here (never more than the bucket has left, and one unit at a time
    for rates under one a second), which requests then spend without asking Redis. Units not
    spent within the lease's second are lost, so a caller is never admitted beyond its limit
    across replicas; at most one second of its recent rate goes unused when it stops."""

    def __init__(self, store: SharedStore) -> None:
        self._store = store
        self._script = store.script(_GCRA)
        self._local: dict[str, float] = {}  # bucket → TAT, on `time.monotonic`'s clock
        self._leases: dict[str, _Lease] = {}
        # The request counted without a wait: in this process when there is no Redis (every
        # request counts here, exactly), else out of the leases held here; None when Redis must
        # be asked (`ask`). Chosen once, and not a coroutine: it runs on every limited request.
        self.spend: Callable[[Buckets], RateState | None] = (
            self._locally if self._script is None else self._leased
        )

    async def check(self, rates: list[Rate]) -> RateState:
        """One request against `rates`, as `Limiters.admit` checks a caller's `Buckets`."""
        buckets = Buckets.of(rates)
        self.derived()
        return self.spend(buckets) or await self.ask(buckets)

    def derived(self) -> None:
        """A caller's buckets were derived: prune the in-process ones past `_LOCAL_MAX`.

        Here rather than per request: a bucket new to this process comes with a derivation
        (`Limiters.admit`, `check`); between two, only the buckets of the callers kept derived
        (`_BUCKETS_MAX`, a few each) can come back once pruned, so the dict stays bounded."""
        if len(self._local) > _LOCAL_MAX:
            now = time.monotonic()
            self._local = {k: tat for k, tat in self._local.items() if tat > now}

    def _leased(self, buckets: Buckets) -> RateState | None:
        """Out of the leases held here, if there is one with a unit left for every bucket."""
        now = time.monotonic()
        leases = self._leases
        held = []
        for key in buckets.keys:
            lease = leases.get(key)
            if lease is None or lease.units < 1 or lease.expires <= now:
                return None
            held.append(lease)
        counts: tuple[int, ...] = ()
        for lease in held:
            lease.units -= 1
            counts += (lease.remaining + lease.units, lease.reset)
        return buckets, counts, 0

    async def ask(self, buckets: Buckets) -> RateState:
        """One script call for every bucket of the request, each asking for a lease."""
        now = time.monotonic()
        rates = buckets.rates
        keys = [f"stk:rl:{key}" for key in buckets.keys]
        wants = [self._want(rate, now) for rate in rates]
        args = [*(interval for _, interval, _ in buckets.steps), *wants, WINDOW_SECONDS]
        answer = await self._store.run(self._script, keys, args)
        if answer is None:
            return self._locally(buckets)
        admitted, clock = bool(int(answer[0])), float(answer[1])
        tats = [float(t) for t in answer[2::2]]
        state = _state(buckets, admitted, clock, tats)
        if not admitted:
            return state
        if len(self._leases) > _LOCAL_MAX:
            self._leases = {k: v for k, v in self._leases.items() if v.expires > now}
        # The headers' remaining counts include the units just leased here (not spent yet).
        counts = list(state[1])
        for i, (rate, granted) in enumerate(zip(rates, answer[3::2], strict=True)):
            size = int(granted)
            remaining, reset = int(counts[2 * i]), int(counts[2 * i + 1])
            self._leases[rate.key] = _Lease(
                size - 1, size, now, now + LEASE_SECONDS, remaining, reset
            )
            counts[2 * i] = remaining + size - 1
        return buckets, tuple(counts), 0

    def _want(self, rate: Rate, now: float) -> int:
        """The units to ask for: the bucket's demand here over the last lease, per
        `LEASE_SECONDS`, up to that much of its rate; one when it is slow or was idle."""
        most = int(rate.per_minute * LEASE_SECONDS / WINDOW_SECONDS)
        lease = self._leases.get(rate.key)
        if most <= 1 or lease is None or now > lease.expires + LEASE_SECONDS:
            return 1
        used = lease.size - max(lease.units, 0)
        elapsed = max(min(now, lease.expires) - lease.began, 0.001)
        return max(1, min(most, math.ceil(used * LEASE_SECONDS / elapsed)))

    def _locally(self, buckets: Buckets) -> RateState:
        """The same GCRA on this process's monotonic clock and buckets (keyed like Redis's,
        unprefixed).

        An admitted request (nearly all) is answered in one pass over its rates, each bucket
        recorded as it is checked, with no object but its counts and state; a refusal undoes
        what the pass recorded (`_refused`). A full bucket (its TAT past: the caller is under
        its rate) takes the counts derived with the buckets, with no arithmetic: this runs on
        every request of a limited tenant when there is no Redis (`docs/decisions.md`,
        limits)."""
        now = time.monotonic()
        local = self._local
        counts: tuple[float, ...] = ()  # one bucket: `() + pair` is the pair, no copy
        for key, interval, idle in buckets.steps:  # not `zip`: here it costs a fifth of it
            tat = local.get(key, now)
            if tat <= now:
                local[key] = now + interval
                counts += idle
                continue
            tat += interval
            ahead = tat - now
            if ahead > WINDOW_SECONDS:
                return self._refused(buckets, key, now)
            local[key] = tat
            # The remaining count stays a whole float: `%d` formats it as `int` would.
            counts += ((_HORIZON - ahead) // interval, ceil(ahead - _SLACK))
        return buckets, counts, 0

    def _refused(self, buckets: Buckets, over: str, now: float) -> RateState:
        """A request over bucket `over`: the buckets before it give back the unit `_locally`
        recorded (a bucket it had found full is then at `now`: full again), so nothing is
        recorded; the wait and the headers."""
        local = self._local
        for key, interval, _ in buckets.steps:
            if key == over:
                break
            local[key] -= interval
        tats = [max(local.get(key, now), now) + interval for key, interval, _ in buckets.steps]
        return _state(buckets, False, now, tats)


def _state(buckets: Buckets, admitted: bool, now: float, tats: list[float]) -> RateState:
    counts: list[int] = []
    wait = 0.0
    for (_, interval, _), tat in zip(buckets.steps, tats, strict=True):
        ahead = tat - now
        if admitted:
            counts += (int((_HORIZON - ahead) // interval), math.ceil(ahead - _SLACK))
        else:
            remaining = max(0, int((_HORIZON - ahead + interval) // interval))
            counts += (remaining, math.ceil(ahead - interval - _SLACK))
            if ahead > WINDOW_SECONDS:
                wait = max(wait, ahead - WINDOW_SECONDS)
    return buckets, tuple(counts), 0 if admitted else max(1, math.ceil(wait - _SLACK))


# Failed sign-ins per bucket: a count and a blocked-until time, both forgotten a window after
# the last failure. 'fail' adds one to each bucket and, past its free count, blocks it for
# 2^(n - free - 1) seconds (capped); 'check' answers the longest wait; 'clear' forgets.
_BACKOFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local mode = ARGV[1]
if mode == 'clear' then
  redis.call('DEL', unpack(KEYS))
  return '0'
end
local window, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
for i, key in ipairs(KEYS) do
  if mode == 'fail' then
    local n = redis.call('HINCRBY', key, 'n', 1)
    local free = tonumber(ARGV[3 + i])
    if n > free then
      local delay = math.min(cap, 2 ^ (n - free - 1))
      redis.call('HSET', key, 'until', string.format('%.6f', now + delay))
    end
    redis.call('EXPIRE', key, window + cap)
  end
  local blocked = tonumber(redis.call('HGET', key, 'until')) or 0
  if blocked - now > wait then wait = blocked - now end
end
return string.format('%.6f', wait)
"""


@dataclass(slots=True)
class _Failures:
    count: int = 0
    blocked_until: float = 0.0
    forget_at: float = 0.0


class AuthThrottle:
    """Growing back-off after failed sign-ins, per bucket ((tenant, email), (tenant, address)),
    shared through Redis like the rates (`docs/security.md`, passwords)."""

    def __init__(self, store: SharedStore, cap_seconds: int, window_seconds: int) -> None:
        self._store = store
        self._script = store.script(_BACKOFF)
        self._cap = cap_seconds
        self._window = window_seconds
        self._local: dict[str, _Failures] = {}

    async def wait(self, keys: list[str]) -> float:
        """Seconds before these buckets may try again (0: now)."""
        answer = await self._store.run(self._script, keys, ["check", self._window, self._cap])
        if answer is not None:
            return float(answer)
        return self._locally(keys, [], time.time())

    async def failed(self, keys: list[str], free: list[int]) -> None:
        args = ["fail", self._window, self._cap, *free]
        if await self._store.run(self._script, keys, args) is None:
            self._locally(keys, free, time.time())

    async def clear(self, keys: list[str]) -> None:
        if await self._store.run(self._script, keys, ["clear"]) is None:
            for key in keys:
                self._local.pop(key, None)

    def _locally(self, keys: list[str], free: list[int], now: float) -> float:
        """`free` given: record a failure (the 'fail' mode); empty: only look."""
        if len(self._local) > _LOCAL_MAX:
            self._local = {k: f for k, f in self._local.items() if f.forget_at > now}
        wait = 0.0
        for i, key in enumerate(keys):
            entry = self._local.get(key)
            if entry is not None and entry.forget_at <= now:
                entry = self._local[key] = _Failures()
            if free:
                entry = entry or self._local.setdefault(key, _Failures())
                entry.count += 1
                if entry.count > free[i]:
                    delay = min(self._cap, 2 ** (entry.count - free[i] - 1))
                    entry.blocked_until = now + delay
                entry.forget_at = now + self._window + self._cap
            if entry is not None:
                wait = max(wait, entry.blocked_until - now)
        return wait


@dataclass(frozen=True, slots=True)
class AuthGuard:
    """The back-off of one sign-in attempt: its tenant, address and free counts."""

    throttle: AuthThrottle
    scope: str
    address: str
    free_per_email: int
    free_per_address: int

    def _buckets(self, email: str) -> tuple[list[str], list[int]]:
        keys, free = [], []
        if self.free_per_email:
            digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
            keys.append(f"stk:af:{self.scope}:e:{digest}")
            free.append(self.free_per_email)
        if self.free_per_address and self.address:
            keys.append(f"stk:af:{self.scope}:a:{self.address}")
            free.append(self.free_per_address)
        return keys, free

    async def check(self, email: str) -> None:
        """429 with `Retry-After` while the email or the address is backing off."""
        keys, _ = self._buckets(email)
        wait = await self.throttle.wait(keys) if keys else 0.0
        if wait > 0:
            raise TooManyRequests(
                "Too many failed attempts; try again later", retry_after=math.ceil(wait)
            )

    async def failed(self, email: str) -> None:
        keys, free = self._buckets(email)
        if keys:
            await self.throttle.failed(keys, free)

    async def succeeded(self, email: str) -> None:
        """A right password forgets the email's failures (not the address's)."""
        if self.free_per_email:
            await self.throttle.clear(self._buckets(email)[0][:1])


class ConcurrencyLimiter:
    """A tenant's excess is shed with 503 at once rather than queued, so a slow tenant cannot
    hold the event loop's attention for others (`docs/tenancy.md` I7)."""

    def __init__(self) -> None:
        self._active: dict[Tenant, int] = {}

    def slot(self, tenant: Tenant, limit: int) -> Slot:
        return Slot(self._active, tenant, limit)


class Slot:
    """One request's place in its tenant's count, taken on `with` entry.

    A class rather than `@contextmanager`: it is entered on every call, and a generator-based
    context manager costs several times more.
    """

    __slots__ = ("_active", "_limit", "_tenant")

    def __init__(self, active: dict[Tenant, int], tenant: Tenant, limit: int) -> None:
        self._active = active
        self._tenant = tenant
        self._limit = limit

    def __enter__(self) -> None:
        active = self._active.get(self._tenant, 0)
        if active >= self._limit:
            raise ServiceUnavailable("Too many concurrent requests for this project")
        self._active[self._tenant] = active + 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        remaining = self._active[self._tenant] - 1
        if remaining:
            self._active[self._tenant] = remaining
        else:
            del self._active[self._tenant]


def _lowest_priority() -> None:
    """The calling thread (Linux schedules threads, not processes) at the lowest CPU priority:
    `SCHED_IDLE`, which a waking thread of the normal policy (the event loop, once a request
    arrives) preempts at once, else nice 19, which it may have to wait a time slice for
    (`docs/decisions.md`, password-hash bulkhead)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _prompt_priority() -> None:
    """The calling thread at nice 19 and `SCHED_BATCH`: above `SCHED_IDLE` (weight 15 against
    3, so a quiet tenant's hash takes most of a CPU a busy tenant's hash shares), far below the
    event loop (1024), and, as batch, never preempting anything when it wakes. Both steps only
    lower a priority, so no privilege is needed (`docs/decisions.md`, password-hash bulkhead)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. under `taskset` or a container's
    cpuset), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(slots=True)
class _Job:
    tag: int  # the round it belongs to (`FairPool`)
    seq: int  # queued order, for ties
    future: Future[Any]
    work: Callable[..., Any]
    args: tuple[Any, ...]


class FairPool:
    """Threads that take tenants' jobs in turn, in two lanes.

    Order: start-time fair queueing with every job one unit. A job queued is tagged with the
    round being served or, if its tenant has jobs at or past that round, the round after its
    tenant's last one; a free thread runs the lowest-tagged job (`_order` on a tie) among the
    tenants not already running `per_tenant` jobs. Busy tenants are so served one job each per
    round: a flood's backlog delays another tenant's job by the jobs already running, never by
    the backlog, and the flooded tenant still gets its share.

    Lanes: a job cannot be preempted once it runs, so a quiet tenant's job would still wait for
    the flood's running one. A tenant is busy while it has had two jobs in the pool at once
    within `BUSY_SECONDS`; busy tenants' jobs run on the `low` threads (lowest CPU priority,
    `_lowest_priority`), the others' on the `prompt` threads (a little higher,
    `_prompt_priority`). A quiet tenant's job so starts at once beside a flood's running one and
    gets most of the CPU they share, and quiet tenants among themselves are served as before:
    in turn, one job at a time per thread. Without prompt threads (where thread priorities
    cannot be set: the lanes would only slice one CPU) the low lane takes every tenant's jobs.
    Threads start with the first job."""

    BUSY_SECONDS = 10.0

    def __init__(
        self,
        low: int,
        prompt: int,
        per_tenant: int,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lanes = (False,) * low + (True,) * prompt  # a thread's lane: prompt or not
        self._one_lane = not prompt  # then the low lane takes every tenant's jobs
        self._per_tenant = per_tenant
        self._name = name
        self._lock = threading.Condition()
        self._queued: dict[Tenant, deque[_Job]] = {}
        self._running: dict[Tenant, int] = {}
        self._after: dict[Tenant, int] = {}  # the round after a tenant's last job, while ahead
        self._busy_until: dict[Tenant, float] = {}  # monotonic time, while in the future
        self._round = 0  # the tag of the job started last
        self._seq = 0
        self._workers: list[threading.Thread] = []
        self._closed = False

    def submit(self, tenant: Tenant, work: Callable[..., T], *args: Any) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} pool is closed")
            tag = max(self._round, self._after.get(tenant, 0))
            self._after[tenant] = tag + 1
            self._seq += 1
            job = _Job(tag, self._seq, Future(), work, args)
            jobs = self._queued.setdefault(tenant, deque())
            jobs.append(job)
            if len(jobs) + self._running.get(tenant, 0) > 1:
                self._busy_until[tenant] = self._clock() + self.BUSY_SECONDS
            if not self._workers:
                for i, prompt in enumerate(self._lanes):
                    worker = threading.Thread(
                        target=self._work, args=(prompt,), name=f"{self._name}-{i}"
                    )
                    worker.daemon = True  # a hash in progress never holds up the exit
                    worker.start()
                    self._workers.append(worker)
            self._lock.notify_all()  # both lanes wait on one condition
        return job.future

    def close(self) -> None:
        """Cancel the queued jobs; threads end once their running job is done."""
        with self._lock:
            self._closed = True
            for jobs in self._queued.values():
                for job in jobs:
                    job.future.cancel()
            self._queued.clear()
            self._lock.notify_all()

    def _work(self, prompt: bool) -> None:
        (_prompt_priority if prompt else _lowest_priority)()
        while True:
            with self._lock:
                while (picked := self._next(prompt)) is None:
                    if self._closed:
                        return
                    self._lock.wait()
            tenant, job = picked
            try:
                if job.future.set_running_or_notify_cancel():
                    try:
                        result = job.work(*job.args)
                    except BaseException as exc:  # the caller's to see, as in ThreadPoolExecutor
                        job.future.set_exception(exc)
                    else:
                        job.future.set_result(result)
            finally:
                with self._lock:
                    left = self._running[tenant] - 1
                    if left:
                        self._running[tenant] = left
                    else:
                        del self._running[tenant]
                    if self._queued:  # its tenant's next job may suit the other lane
                        self._lock.notify_all()

    def _order(self, tenant: Tenant) -> tuple[int, int, int]:
        """Lowest tag first; in a round, the tenant with the fewest jobs waiting, then the first
        queued: a flood's job of this round runs after a quiet tenant's."""
        jobs = self._queued[tenant]
        return jobs[0].tag, len(jobs), jobs[0].seq

    def _next(self, prompt: bool) -> tuple[Tenant, _Job] | None:
        """The next job for a thread of this lane, under the lock: see the class docstring."""
        now = self._clock()
        ready = [
            t
            for t in self._queued
            if self._running.get(t, 0) < self._per_tenant
            and (self._one_lane or (self._busy_until.get(t, 0.0) > now) != prompt)
        ]
        if not ready:
            return None
        tenant = min(ready, key=self._order)
        jobs = self._queued[tenant]
        job = jobs.popleft()
        if not jobs:
            del self._queued[tenant]
        self._running[tenant] = self._running.get(tenant, 0) + 1
        if job.tag > self._round:  # a tenant at or behind the round needs no memory
            self._round = job.tag
            self._after = {t: r for t, r in self._after.items() if r > self._round}
            self._busy_until = {t: u for t, u in self._busy_until.items() if u > now}
        return tenant, job


class HashBulkhead:
    """Password hashing (argon2, CPU- and memory-heavy) as a per-tenant bulkhead
    (`docs/security.md` passwords; issue 9 row 2).

    Each tenant holds at most `per_tenant + queue` places at once (`slot`); past that it is
    refused at once (429 with `Retry-After`) instead of queueing. A place is taken before the
    sign-in reads the registry, so a flood's excess costs neither a query nor a hash. The hashes
    themselves run on a `FairPool` of their own, two lanes of as many threads as CPUs this
    process may use (`threads` 0) or `threads`, below the event loop's CPU priority so it
    (every tenant's requests) goes first, at most `per_tenant` of one tenant's at once, tenants
    taken in turn: a login flood on one tenant fills its own queue and the low lane, and another
    tenant's hash starts at once on the prompt lane beside the flood's running one.
    """

    def __init__(self, threads: int = 0, per_tenant: int = 2, queue: int = 8) -> None:
        self.threads = threads or usable_cpus()
        self.per_tenant = per_tenant
        self.queue = queue
        self._holders: dict[Tenant, int] = {}
        self._pool: FairPool | None = None

    @contextlib.asynccontextmanager
    async def slot(self, tenant: Tenant) -> AsyncIterator[None]:
        """One of `tenant`'s places; 429 when they are all taken."""
        held = self._holders.get(tenant, 0)
        if held >= self.per_tenant + self.queue:
            raise TooManyRequests("Too many password checks in progress for this project")
        self._holders[tenant] = held + 1
        try:
            yield
        finally:
            left = self._holders[tenant] - 1
            if left:
                self._holders[tenant] = left
            else:
                del self._holders[tenant]

    async def compute(self, tenant: Tenant, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in `tenant`'s turn on a hash thread (call it holding a `slot`). A
        caller cancelled meanwhile drops a queued job; a running one finishes on its thread."""
        if self._pool is None:
            prompt = self.threads if hasattr(os, "SCHED_BATCH") else 0
            self._pool = FairPool(self.threads, prompt, self.per_tenant, "stk-hash")
        return await asyncio.wrap_future(self._pool.submit(tenant, work, *args))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
