"""Per-tenant request rate limits (`limits.requestsPerMinute`, `api.md` step 5 → 429).

Fixed one-minute windows per (project, env). With Redis configured the count is shared by every
replica (one pipelined INCR + EXPIRE per limited request); without it, or while Redis does not
answer, each process counts on its own — a rate limit degrades to per-replica rather than
refusing or admitting every request. Tenants without a limit pay nothing.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from tenancy.errors import TooManyRequests
from tenancy.principal import Tenant
from tenancy.redis_url import split_prefix

WINDOW_SECONDS = 60
log = logging.getLogger("stk.ratelimit")


class RateLimiter:
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
