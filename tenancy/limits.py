"""Request limits: a project's typed `Limits` and every limiter enforcing them (`docs/admin.md`
limits, `docs/tenancy.md` I7, `docs/api.md` pipeline step 5).

One home on purpose: a new limit (per API key, user or address; a CPU bulkhead) is a field of
`Limits` and a check in `Limiters`, and admission keeps calling the same two methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis

from tenancy.errors import BadRequest, ServiceUnavailable, TooManyRequests
from tenancy.principal import Tenant
from tenancy.redis_url import split_prefix

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


class Limiters:
    """Every limiter, owned by the `Runtime`: `admit` counts a request once it is admitted to a
    tenant (429), `slot` is held while it works (503)."""

    def __init__(
        self,
        redis_url: str | None,
        max_concurrency: int,
        hashing: HashBulkhead | None = None,
    ) -> None:
        self.rate = RateLimiter(redis_url)
        self.concurrency = ConcurrencyLimiter()
        self.hashing = hashing or HashBulkhead()
        self._max_concurrency = max_concurrency

    async def admit(self, tenant: Tenant, limits: Limits) -> None:
        if limits.requests_per_minute:  # tenants without a limit pay nothing
            await self.rate.hit(tenant, limits.requests_per_minute)

    def slot(self, tenant: Tenant, limits: Limits) -> Slot:
        return self.concurrency.slot(tenant, limits.max_concurrency or self._max_concurrency)

    async def close(self) -> None:
        await self.rate.close()
        self.hashing.close()


class RateLimiter:
    """Fixed one-minute windows per (project, env).

    With Redis configured the count is shared by every replica (one pipelined INCR + EXPIRE per
    limited request); without it, or while Redis does not answer, each process counts on its own —
    a rate limit degrades to per-replica rather than refusing or admitting every request.
    """

    def __init__(self, redis_url: str | None) -> None:
        self._redis: aioredis.Redis | None = None
        self._prefix = ""
        if redis_url:
            url, self._prefix = split_prefix(redis_url)
            self._redis = aioredis.Redis.from_url(url)
        self._window = 0
        self._local: dict[Tenant, int] = {}

    async def hit(self, tenant: Tenant, per_minute: int) -> None:
        """Count one request of `tenant`; raise 429 past `per_minute` in this window."""
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        count = await self._shared(tenant, window) if self._redis is not None else None
        if count is None:
            count = self._count_locally(tenant, window)
        if count > per_minute:
            retry_after = max(1, WINDOW_SECONDS - int(now % WINDOW_SECONDS))
            raise TooManyRequests("Rate limit exceeded", retry_after=retry_after)

    async def _shared(self, tenant: Tenant, window: int) -> int | None:
        assert self._redis is not None
        key = f"{self._prefix}stk:rl:{tenant.project}:{tenant.env}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 2 * WINDOW_SECONDS)
                count, _ = await pipe.execute()
        except (OSError, aioredis.RedisError):
            log.warning("rate-limit store unreachable; counting in this process")
            return None
        return int(count)

    def _count_locally(self, tenant: Tenant, window: int) -> int:
        if window != self._window:
            self._window, self._local = window, {}
        count = self._local.get(tenant, 0) + 1
        self._local[tenant] = count
        return count

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


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


@dataclass(slots=True)
class _TenantHashes:
    running: asyncio.Semaphore
    holders: int = 0  # running + queued


@dataclass(slots=True)
class HashBulkhead:
    """Password hashing (argon2, CPU- and memory-heavy) as a per-tenant bulkhead
    (`docs/security.md` passwords; issue 9 row 2).

    Hashes run on a pool of their own threads, so they never wait behind other blocking work;
    each tenant runs at most `per_tenant` at once and queues at most `queue` more. A tenant past
    both is refused at once (429 with `Retry-After`) instead of queueing, so a login flood on one
    tenant fills its own queue, not the pool: another tenant's hash waits for at most
    `per_tenant` of each busy tenant's hashes, not for the flood.
    """

    threads: int = 4
    per_tenant: int = 2
    queue: int = 8
    _tenants: dict[Tenant, _TenantHashes] = field(default_factory=dict)
    _executor: ThreadPoolExecutor | None = None

    async def run(self, tenant: Tenant, work: Callable[..., T], *args: Any) -> T:
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _TenantHashes(asyncio.Semaphore(self.per_tenant))
        if entry.holders >= self.per_tenant + self.queue:
            raise TooManyRequests("Too many password checks in progress for this project")
        entry.holders += 1
        try:
            async with entry.running:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.threads, "stk-hash")
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, work, *args)
        finally:
            entry.holders -= 1
            if not entry.holders:
                del self._tenants[tenant]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
