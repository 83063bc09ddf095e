"""Per-tenant connection pools (`docs/tenancy.md`, "Connection pools"; invariants I1 and I7).

One pool per (project, env, alias, secret version), so a query can only reach the database of the
secret it was resolved with (I1). A tenant's slowness stays its own (I7): it waits at most the pool
timeout for one of its own connections and each statement runs under its statement timeout.

Pools are built without I/O (connections open on demand), so looking a pool up and creating it
happen in one step of the event loop: concurrent first queries of a tenant can never build two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenancy.engines import Connection, QueryResult, connector, engine_of, verify_url
from tenancy.errors import BadRequest, ServiceUnavailable
from tenancy.types import Engine

__all__ = ["PoolKey", "PoolManager", "QueryResult", "engine_of", "verify_url"]


@dataclass(frozen=True, slots=True)
class PoolKey:
    project: str
    env: str
    alias: str
    version: int


class _Pool:
    """Up to `max_size` connections to one tenant database, opened when first needed."""

    def __init__(
        self,
        engine: Engine,
        connect: Callable[[], Awaitable[Connection]],
        max_size: int,
        statement_timeout_ms: int,
        on_idle: Callable[[], None],
    ) -> None:
        self.engine = engine
        self.max_size = max_size
        self.statement_timeout_ms = statement_timeout_ms
        self.users = 0  # queries running or waiting on this pool
        self.in_use = 0  # connections running a statement
        self.last_used = time.monotonic()
        self._connect = connect
        self._on_idle = on_idle
        self._free: list[Connection] = []
        self._slots = asyncio.Semaphore(max_size)
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._free)

    @property
    def size(self) -> int:
        return self.in_use + len(self._free)

    async def run(self, sql: str, args: Sequence[Any], deadline: float) -> QueryResult:
        assert not self._closed, "a closed pool is never handed out"
        self.users += 1
        self._drained.clear()
        try:
            if self._slots.locked():
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._slots.acquire()
                except TimeoutError:
                    raise ServiceUnavailable("Connection pool exhausted") from None
            else:
                await self._slots.acquire()  # a free slot: no wait, so no timer to arm
            try:
                conn = self._free.pop() if self._free else await self._open(deadline)
                self.in_use += 1
                try:
                    return await conn.run(sql, args)
                finally:
                    self.in_use -= 1
                    if conn.broken:
                        conn.discard()
                    else:
                        self._free.append(conn)
            finally:
                self._slots.release()
        finally:
            self.users -= 1
            self.last_used = time.monotonic()
            if not self.users:
                self._drained.set()
                self._on_idle()

    async def _open(self, deadline: float) -> Connection:
        try:
            async with asyncio.timeout_at(deadline):
                return await self._connect()
        except TimeoutError:
            raise ServiceUnavailable("Tenant database unavailable: timed out") from None

    async def close(self) -> None:
        """Close once the queries already on this pool have finished (graceful)."""
        self._closed = True
        await self._drained.wait()
        free, self._free = self._free, []
        await asyncio.gather(*(conn.close() for conn in free))


class PoolManager:
    """All tenant pools of the process, under one global connection budget.

    The budget (`max_total`) counts the `max_size` of every open pool. A pool leaves the budget
    the moment it is retired or evicted; a retired pool that is still draining is outside it,
    for at most the statement timeout of its last queries.
    """

    def __init__(
        self,
        max_per_tenant: int,
        max_total: int,
        timeout_ms: int,
        idle_seconds: float,
        statement_timeout_ms: int,
    ) -> None:
        self.max_per_tenant = max_per_tenant
        self.max_total = max_total
        self.timeout_ms = timeout_ms
        self.idle_seconds = idle_seconds
        self.statement_timeout_ms = statement_timeout_ms
        self._pools: dict[PoolKey, _Pool] = {}
        self._reserved = 0
        self._closing: dict[asyncio.Task[None], _Pool] = {}
        self._capacity = asyncio.Event()
        self._waiters = 0

    async def query(
        self,
        key: PoolKey,
        url: str,
        sql: Mapping[str, str] | str,
        args: Sequence[Any],
        *,
        max_size: int | None = None,
        statement_timeout_ms: int | None = None,
    ) -> QueryResult:
        """Run one statement on the tenant's pool; `sql` may be keyed by engine.

        `url` is only read when the pool is built: the key's version names the secret. A change
        of `max_size` or `statement_timeout_ms` (the tenant's limits) replaces the pool.
        """
        deadline = asyncio.get_running_loop().time() + self.timeout_ms / 1000
        size = min(max_size or self.max_per_tenant, self.max_total)
        timeout_ms = statement_timeout_ms or self.statement_timeout_ms
        pool = self._pools.get(key)
        if pool is None or pool.max_size != size or pool.statement_timeout_ms != timeout_ms:
            pool = await self._pool_for(key, url, size, timeout_ms, deadline)
        if isinstance(sql, str):
            text = sql
        elif pool.engine in sql:
            text = sql[pool.engine]
        else:
            raise BadRequest(f"Statement has no {pool.engine} form")
        return await pool.run(text, args, deadline)

    async def _pool_for(
        self, key: PoolKey, url: str, size: int, timeout_ms: int, deadline: float
    ) -> _Pool:
        while True:
            pool = self._pools.get(key)
            if pool is not None:
                if pool.max_size == size and pool.statement_timeout_ms == timeout_ms:
                    return pool
                self._drop(key)
            if self._reserved + size <= self.max_total:
                pool = _Pool(
                    engine_of(url), connector(url, timeout_ms), size, timeout_ms, self._notify
                )
                self._pools[key] = pool
                self._reserved += size
                return pool
            if not self._evict_lru_idle():
                await self._wait_for_capacity(deadline)

    def _evict_lru_idle(self) -> bool:
        idle = [(pool.last_used, key) for key, pool in self._pools.items() if not pool.users]
        if not idle:
            return False
        self._drop(min(idle, key=lambda item: item[0])[1])
        return True

    async def _wait_for_capacity(self, deadline: float) -> None:
        self._waiters += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._capacity.wait()
        except TimeoutError:
            raise ServiceUnavailable("Connection capacity exhausted") from None
        finally:
            self._waiters -= 1

    def _notify(self) -> None:
        """A pool went idle or left the budget: wake whoever waits for capacity."""
        if self._waiters:
            self._capacity.set()
            self._capacity = asyncio.Event()

    def _drop(self, key: PoolKey) -> asyncio.Task[None]:
        """Take a pool out of service now; it closes in the background once drained."""
        pool = self._pools.pop(key)
        self._reserved -= pool.max_size
        task = asyncio.get_running_loop().create_task(pool.close())
        self._closing[task] = pool
        task.add_done_callback(self._closing.pop)
        self._notify()
        return task

    def retire(
        self,
        project: str,
        env: str | None = None,
        alias: str | None = None,
        keep_version: int | None = None,
    ) -> int:
        """Take matching pools out of service now; each closes once its in-flight queries are
        done (in the background), and new queries build new pools.

        For a secret change pass `keep_version` (the new version); for an env or project
        deletion or disable, leave it None. Returns how many pools were retired.
        """
        keys = [
            key
            for key in self._pools
            if key.project == project
            and (env is None or key.env == env)
            and (alias is None or key.alias == alias)
            and key.version != keep_version
        ]
        for key in keys:
            self._drop(key)
        return len(keys)

    async def close_idle(self) -> int:
        """Close pools unused for `idle_seconds`; returns how many."""
        limit = time.monotonic() - self.idle_seconds
        keys = [k for k, p in self._pools.items() if not p.users and p.last_used <= limit]
        await _settle([self._drop(key) for key in keys])
        return len(keys)

    async def run_janitor(self, interval_s: float = 30) -> None:
        """Run `close_idle` every `interval_s` until cancelled (a lifespan task)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.close_idle()

    async def close_all(self) -> None:
        """Retire every pool and wait until all are closed (shutdown)."""
        for key in list(self._pools):
            self._drop(key)
        await _settle(list(self._closing))

    def stats(self, project: str) -> list[dict[str, Any]]:
        return [
            {
                "env": key.env,
                "alias": key.alias,
                "version": key.version,
                "engine": pool.engine,
                "max_size": pool.max_size,
                "size": pool.size,
                "in_use": pool.in_use,
                "idle": pool.idle,
            }
            for key, pool in sorted(
                self._pools.items(), key=lambda item: (item[0].env, item[0].alias, item[0].version)
            )
            if key.project == project
        ]

    @property
    def open_pools(self) -> int:
        return len(self._pools)

    @property
    def open_connections(self) -> int:
        """Connections open now, draining pools included."""
        return sum(pool.size for pool in self._all_pools())

    @property
    def connections_in_use(self) -> int:
        return sum(pool.in_use for pool in self._all_pools())

    def _all_pools(self) -> list[_Pool]:
        return [*self._pools.values(), *self._closing.values()]


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for pool closes; unlike gather, being cancelled does not cancel them half-way."""
    if tasks:
        await asyncio.wait(tasks)
