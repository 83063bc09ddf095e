"""Per-tenant connection pools under one fair connection budget (`docs/tenancy.md`, "Connection
pools"; invariants I1 and I7).

One pool per (project, env, alias, secret version), so a query can only reach the database of the
secret it was resolved with (I1). The tenant's limits are not part of a pool's identity: a change
of them resizes the pool in place. A tenant's trouble stays its own (I7):

- the process budget (`max_total`) counts real connections, open or opening. While it has room a
  pool grows up to its size; under pressure (the budget spent, or a pool waiting for it) each pool
  gets at most its fair share, `max_total // active pools` (at least one): a pool over its share
  closes connections as they come back instead of reusing them, and a pool under it takes an idle
  connection of the pool most over its share, else of the least recently used pool;
- waiting is per pool: one FIFO queue of futures served by hand-off, so a tenant's waiters only
  ever wait for that tenant's connections or for a budget slot handed out in turn;
- a tenant database that fails to connect trips the pool's circuit breaker (`tenancy/breaker.py`):
  fast 503s instead of one connect timeout per request.

Written by hand (not asyncpg's pool) for those rules and for our own prepared-statement cache
(`docs/decisions.md`). Pools are built without I/O, so concurrent first queries build one pool.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tenancy.breaker import Breaker, State
from tenancy.engines import Connection, Pooler, QueryResult, connector, engine_of, verify_url
from tenancy.errors import BadRequest, ServiceUnavailable
from tenancy.types import Engine

__all__ = ["PoolKey", "PoolManager", "Pooler", "QueryResult", "engine_of", "verify_url"]

# A waiter's deadline and its future: a connection handed over, or None (a budget slot reserved
# for it: it opens a connection itself).
_Waiter = tuple[float, asyncio.Future[Connection | None]]


class PoolKey(NamedTuple):
    project: str
    env: str
    alias: str
    version: int


class _Pool:
    """Up to `max_size` connections to one tenant database, opened when first needed.

    The fast path (a free connection) is a list pop and a list append. Waiting is one queue with
    one timer: every wait lasts the same time, so deadlines are in queue order and the timer
    only ever needs the head's.
    """

    __slots__ = (
        "_connect",
        "_free",
        "_gone",
        "_hungry_pools",
        "_loop",
        "_manager",
        "_open",
        "_outdated",
        "_pooler",
        "_timer",
        "_url",
        "_waiters",
        "breaker",
        "engine",
        "hungry",
        "last_used",
        "max_size",
        "opening",
        "retired",
        "size",
        "statement_timeout_ms",
    )

    def __init__(
        self,
        manager: PoolManager,
        url: str,
        pooler: Pooler,
        max_size: int,
        statement_timeout_ms: int,
    ) -> None:
        self.engine: Engine = engine_of(url)
        self.max_size = max_size
        self.statement_timeout_ms = statement_timeout_ms
        self.breaker = Breaker(manager.breaker_failures, manager.breaker_open_seconds)
        self.size = 0  # connections open or opening: what this pool holds of the budget
        self.opening = 0
        self.hungry = False  # queued for a budget slot (`PoolManager.hungry_pools`)
        self.retired = False
        self.last_used = time.monotonic()
        self._manager = manager
        self._loop = manager.loop
        self._hungry_pools = manager.hungry_pools  # read on every release
        self._url = url
        self._pooler: Pooler = pooler
        self._connect = connector(url, statement_timeout_ms, manager.connect_timeout_s, pooler)
        self._free: list[Connection] = []
        self._open: set[Connection] = set()
        self._outdated: set[Connection] = set()  # in use, opened under an older statement timeout
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._gone: asyncio.Future[None] | None = None

    @property
    def idle(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return self.size - len(self._free) - self.opening

    @property
    def unused(self) -> bool:
        """No connection in use or opening, nobody waiting."""
        return self.size == len(self._free) and self.live_waiter() is None

    async def run(self, sql: str, args: Sequence[Any], read_only: bool) -> QueryResult:
        conn = self._free.pop() if self._free else await self._acquire()
        try:
            result = await conn.run(sql, args)
        except BaseException as exc:
            self._release(conn)
            if not (isinstance(exc, ServiceUnavailable) and conn.broken):
                raise
            # The database dropped the connection (failover, terminated backend): the idle ones
            # most likely went with it, and only a read-only statement may run a second time.
            self.close_idle()
            if not read_only:
                raise
        else:
            self._release(conn)
            return result
        conn = self._free.pop() if self._free else await self._acquire()
        try:
            return await conn.run(sql, args)
        finally:
            self._release(conn)

    async def _acquire(self) -> Connection:
        manager = self._manager
        if manager.reserve(self):
            return await self._open_reserved()
        waiter: asyncio.Future[Connection | None] = self._loop.create_future()
        deadline = self._loop.time() + manager.timeout_s
        self._waiters.append((deadline, waiter))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)
        if self.hungry:
            manager.reclaim()
        try:
            conn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._pass_on(waiter.result())  # handed over just as the caller went away
            raise
        return conn if conn is not None else await self._open_reserved()

    def _pass_on(self, handed: Connection | None) -> None:
        if handed is None:
            self._manager.give_back(self)
        else:
            self._release(handed)

    def live_waiter(self) -> asyncio.Future[Connection | None] | None:
        """The first waiter still waiting (the done ones before it are dropped)."""
        waiters = self._waiters
        while waiters:
            waiter = waiters[0][1]
            if not waiter.done():
                return waiter
            waiters.popleft()
        return None

    def _expire(self) -> None:
        now = self._loop.time()
        waiters = self._waiters
        while waiters and (waiters[0][1].done() or waiters[0][0] <= now):
            waiter = waiters.popleft()[1]
            if not waiter.done():
                waiter.set_exception(
                    ServiceUnavailable(
                        "Connection capacity exhausted"
                        if self.size < self.max_size
                        else "Connection pool exhausted"
                    )
                )
        self._timer = self._loop.call_at(waiters[0][0], self._expire) if waiters else None
        if not waiters:
            self._manager.not_hungry(self)
            self._check_gone()

    async def _open_reserved(self) -> Connection:
        """Open a connection in a slot already counted in `size` and the budget."""
        if not self.breaker.allow():
            self._manager.give_back(self)
            raise ServiceUnavailable("Tenant database unavailable: connections keep failing")
        connect = self._connect
        self.opening += 1
        try:
            conn = await connect()
        except BaseException:
            self.opening -= 1
            self.breaker.failure()
            self._manager.connect_failures += 1
            self._manager.give_back(self)
            raise
        self.opening -= 1
        self.breaker.success()
        self._manager.connects += 1
        self._open.add(conn)
        if connect is not self._connect:  # the statement timeout changed meanwhile
            self._outdated.add(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        self.last_used = time.monotonic()
        if conn.broken:
            self._close(conn, polite=False)
            return
        # Under pressure (pools under their share wait for a slot) a pool keeps at most its share.
        share = self._manager.share() if self._hungry_pools else self.max_size
        if (
            self.size > share
            or self.size > self.max_size
            or (self._outdated and conn in self._outdated)
        ):
            self._close(conn)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()[1]
            if not waiter.done():
                waiter.set_result(conn)
                if self.hungry and self.live_waiter() is None:
                    self._manager.not_hungry(self)
                return
        if self.retired:
            self._close(conn)
            return
        self._free.append(conn)
        if self._hungry_pools:
            self._manager.reclaim()  # an idle connection now: the best one goes to the hungry

    def _close(self, conn: Connection, polite: bool = True) -> None:
        self._open.discard(conn)
        self._outdated.discard(conn)
        if polite:
            self._manager.give_back(self, closing=conn)
        else:
            conn.discard()
            self._manager.give_back(self)

    def close_idle(self, keep: int = 0) -> None:
        while len(self._free) > keep:
            self._close(self._free.pop())

    def configure(self, max_size: int, statement_timeout_ms: int) -> None:
        """Apply changed limits in place. A smaller size closes idle connections now and busy
        ones as they come back; a new statement timeout applies to new connections, and the
        old ones are closed the same way."""
        if statement_timeout_ms != self.statement_timeout_ms:
            self.statement_timeout_ms = statement_timeout_ms
            self._connect = connector(
                self._url, statement_timeout_ms, self._manager.connect_timeout_s, self._pooler
            )
            self._outdated = self._open.difference(self._free)
            self.close_idle()
        grew = max_size > self.max_size
        self.max_size = max_size
        self.close_idle(keep=max(0, len(self._free) - (self.size - max_size)))
        if grew:
            self._manager.wake(self)

    def retire(self) -> asyncio.Future[None]:
        """Out of service: idle connections close now, busy ones as they come back; the future
        is done once none is left (waiters already queued are still served)."""
        self.retired = True
        self._gone = self._loop.create_future()
        self.close_idle()
        self._check_gone()
        return self._gone

    def _check_gone(self) -> None:
        gone = self._gone
        if gone is not None and not gone.done() and not self.size and self.live_waiter() is None:
            gone.set_result(None)


class PoolManager:
    """All tenant pools of the process, under one fair connection budget (module docstring).

    `open_connections` is the budget's exact count: connections of retired pools still draining
    count until they close.
    """

    def __init__(
        self,
        max_per_tenant: int,
        max_total: int,
        timeout_ms: int,
        idle_seconds: float,
        statement_timeout_ms: int,
        connect_timeout_ms: int,
        breaker_failures: int,
        breaker_open_seconds: float,
    ) -> None:
        self.max_per_tenant = max_per_tenant
        self.max_total = max_total
        self.timeout_s = timeout_ms / 1000
        self.idle_seconds = idle_seconds
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_s = connect_timeout_ms / 1000
        self.breaker_failures = breaker_failures
        self.breaker_open_seconds = breaker_open_seconds
        self.open_connections = 0  # open or opening, in every pool (retired ones included)
        self.connects = 0  # connections opened, ever
        self.connect_failures = 0
        self._holders = 0  # pools holding at least one connection
        self._pools: dict[PoolKey, _Pool] = {}
        self._retired: dict[_Pool, asyncio.Future[None]] = {}
        self.hungry_pools: deque[_Pool] = deque()  # pools under their share waiting for a slot
        self._closing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """Looked up once: `get_running_loop()` costs a system call on every use (Python 3.11)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def query(
        self,
        key: PoolKey,
        url: str,
        sql: Mapping[str, str] | str,
        args: Sequence[Any],
        *,
        pooler: Pooler = "none",
        max_size: int | None = None,
        statement_timeout_ms: int | None = None,
        read_only: bool = False,
    ) -> QueryResult:
        """Run one statement on the tenant's pool; `sql` may be keyed by engine.

        `url` and `pooler` are only read when the pool is built: the key's version names the
        secret, and both are stored with it (`docs/poolers.md`). The
        tenant's limits (`max_size`, `statement_timeout_ms`) apply to the pool in place. Pass
        `read_only=True` only for a statement without side effects: if its connection turns out
        broken, it runs once more on another one.
        """
        size = min(max_size or self.max_per_tenant, self.max_total)
        timeout_ms = statement_timeout_ms or self.statement_timeout_ms
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self, url, pooler, size, timeout_ms)
        elif pool.max_size != size or pool.statement_timeout_ms != timeout_ms:
            pool.configure(size, timeout_ms)
        if isinstance(sql, str):
            text = sql
        elif pool.engine in sql:
            text = sql[pool.engine]
        else:
            raise BadRequest(f"Statement has no {pool.engine} form")
        return await pool.run(text, args, read_only)

    # --- the budget ---------------------------------------------------------------------------

    def share(self, asking: _Pool | None = None) -> int:
        """Connections a pool may hold under pressure: an equal split over the pools holding
        connections or waiting for their first one, at least one each."""
        active = self._holders + sum(1 for pool in self.hungry_pools if not pool.size)
        if asking is not None and not asking.size and not asking.hungry:
            active += 1
        return max(1, self.max_total // max(1, active))

    def over_share(self, pool: _Pool) -> bool:
        return pool.size > self.share()

    def reserve(self, pool: _Pool) -> bool:
        """Count one more connection for `pool` if it may open one now. When the budget is
        spent and the pool is under its share, it is queued for the next free slot."""
        if pool.size >= pool.max_size:
            return False
        if self.hungry_pools or self.open_connections >= self.max_total:
            if pool.size >= self.share(pool):
                return False
            if self.open_connections >= self.max_total:
                if not pool.hungry:
                    pool.hungry = True
                    self.hungry_pools.append(pool)
                return False
        self._take(pool)
        return True

    def reclaim(self) -> None:
        """Close one idle connection for the pools waiting for a slot: of the pool most over
        its share, else of the least recently used one. The slot goes to them in turn."""
        hungry = self.hungry_pools
        while hungry and hungry[0].live_waiter() is None:
            hungry.popleft().hungry = False
        if len(hungry) <= len(self._closing):
            return  # the connections closing now already free a slot for each of them
        share = self.share()
        victims = [pool for pool in self._pools.values() if pool.idle]
        if victims:
            victim = max(victims, key=lambda p: (max(0, p.size - share), -p.last_used))
            victim.close_idle(keep=victim.idle - 1)

    def give_back(self, pool: _Pool, closing: Connection | None = None) -> None:
        """One of `pool`'s connections is gone: never opened, discarded, or `closing`. Its
        budget slot is handed on once the connection is really closed."""
        pool.size -= 1
        if not pool.size:
            self._holders -= 1
        if closing is None:
            self._slot_freed()
        else:
            task = self.loop.create_task(closing.close())
            self._closing.add(task)
            task.add_done_callback(self._closed)
        if pool.size < pool.max_size:
            self.wake(pool)
        if pool.retired:
            pool._check_gone()

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        self._slot_freed()

    def _slot_freed(self) -> None:
        self.open_connections -= 1
        self._feed()

    def wake(self, pool: _Pool) -> None:
        """Let waiters of `pool` open connections while the pool and the budget allow."""
        while (waiter := pool.live_waiter()) is not None and self.reserve(pool):
            pool._waiters.popleft()
            waiter.set_result(None)

    def not_hungry(self, pool: _Pool) -> None:
        if pool.hungry:
            pool.hungry = False
            self.hungry_pools.remove(pool)

    def _feed(self) -> None:
        """Free slots go to the hungry pools in turn, one connection each per round."""
        hungry = self.hungry_pools
        while hungry and self.open_connections < self.max_total:
            pool = hungry.popleft()
            pool.hungry = False
            waiter = pool.live_waiter()
            if waiter is None or pool.size >= pool.max_size:
                continue
            pool._waiters.popleft()
            self._take(pool)
            waiter.set_result(None)
            if pool.live_waiter() is not None and pool.size < self.share():
                pool.hungry = True
                hungry.append(pool)

    def _take(self, pool: _Pool) -> None:
        if not pool.size:
            self._holders += 1
        pool.size += 1
        self.open_connections += 1

    # --- retirement -----------------------------------------------------------------------------

    def _drop(self, key: PoolKey) -> asyncio.Future[None]:
        """Take a pool out of service now; it closes in the background once drained."""
        pool = self._pools.pop(key)
        gone = pool.retire()
        if not gone.done():
            self._retired[pool] = gone
            gone.add_done_callback(lambda _: self._retired.pop(pool, None))
        return gone

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
        keys = [k for k, p in self._pools.items() if p.unused and p.last_used <= limit]
        await _settle([self._drop(key) for key in keys])
        await _settle(list(self._closing))
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
        await _settle(list(self._retired.values()))
        await _settle(list(self._closing))

    # --- observation ------------------------------------------------------------------------------

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
                "breaker": pool.breaker.state,
            }
            for key, pool in sorted(
                self._pools.items(), key=lambda item: (item[0].env, item[0].alias, item[0].version)
            )
            if key.project == project
        ]

    def breaker_states(self) -> dict[State, int]:
        """Open pools by the state of their breaker (a gauge for `/metrics`)."""
        counts: dict[State, int] = {"closed": 0, "open": 0, "half_open": 0}
        for pool in self._pools.values():
            counts[pool.breaker.state] += 1
        return counts

    @property
    def open_pools(self) -> int:
        return len(self._pools)

    @property
    def connections_in_use(self) -> int:
        return sum(pool.in_use for pool in (*self._pools.values(), *self._retired))


async def _settle(futures: Sequence[asyncio.Future[None]]) -> None:
    """Wait for pool closes; unlike gather, being cancelled does not cancel them half-way."""
    if futures:
        await asyncio.wait(futures)
