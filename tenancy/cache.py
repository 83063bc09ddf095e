"""The cache toolkit: every in-process cache of tenant state is a `Cache` (`docs/tenancy.md`).

One class gives every cache the same rules, so a fix or a new rule lands once:

- a TTL as a backstop (`ttl=None`: the value never changes, e.g. a release named by its hash);
- an LRU bound (`max_entries`);
- misses (a loader answering None) kept at most `MISS_TTL_MAX` seconds, so a tenant created a
  moment ago is seen quickly;
- single flight: concurrent misses of one key run its loader once;
- keys start with the project (or the value names it: `owner`), so `invalidate(project)` marks
  exactly that tenant's entries stale;
- what a failed load answers, decided by the one `StaleOnError` policy of the dependency the
  loader reads (`registry_policy`, `kv_policy`): the stale value, re-armed for the back-off of
  the dependency's circuit breaker;
- hit / miss / stale counters, read by `/metrics` at scrape time (never per request).

The stale rules live in two places only, both here: `StaleOnError.load` (what a failed load
serves, and for how long) and `Cache.invalidate` (what a change does to an entry). Hand-written
caches elsewhere are a defect: extend this one (`docs/decisions.md`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from tenancy.breaker import Breaker
from tenancy.errors import ServiceUnavailable

log = logging.getLogger("stk.cache")

V = TypeVar("V")
Key = tuple[Hashable, ...]
Loader = Callable[[], Awaitable[V | None]]
MISS_TTL_MAX = 1.0  # an unknown tenant is never remembered longer (`docs/tenancy.md`)
# Stale answers are logged at most once per tenant and dependency in this window.
LOG_EVERY_SECONDS = 60.0
LOG_OWNERS_MAX = 10_000
# An entry's state: as loaded (fresh until it expires); a stale value re-armed after a failed
# reload (answered until it expires, counted stale); marked stale by a change.
FRESH, REARMED, CHANGED = 0, 1, 2
# What `Cache.peek` reads for a key it does not hold: no value.
_ABSENT: tuple[float, None, int] = (-math.inf, None, FRESH)


class _Open(Exception):
    """The dependency's breaker refused the load: answer stale (or 503) without trying."""


class StaleOnError:
    """What a cache answers when a load fails because `dependency` is unreachable
    (`docs/tenancy.md`, "When a dependency is down").

    The last value the cache held for the key, however old, is served and *re-armed* for
    `breaker.open_seconds`: the next lookups of that key within the window answer it at once
    instead of each paying the dependency's timeout. Without a value, 503 (`unavailable`, or the
    dependency's own error when None). One instance per dependency per process, shared by every
    cache loading from it; its `breaker` (closed → open after consecutive failed loads →
    half-open: one probe) stops every key paying a timeout once the dependency is known down.
    Serving stale is counted (`served`, `stk_dependency_stale_total`) and logged once per tenant
    per `LOG_EVERY_SECONDS`, never per request.
    """

    def __init__(
        self,
        dependency: str,
        errors: tuple[type[Exception], ...],
        unavailable: str | None = None,
        *,
        breaker: Breaker | None = None,
    ) -> None:
        self.dependency = dependency
        self.errors = errors
        self._caught: tuple[type[Exception], ...] = (*errors, _Open)
        self.unavailable = unavailable
        self.breaker = breaker or Breaker.for_dependency()
        self.served = 0  # answers given from a stale value, every cache of the dependency
        self._logged: dict[Hashable, float] = {}

    async def load(self, cache: Cache[V], key: Key, loader: Loader[V]) -> V | None:
        """`cache`'s miss path under this policy: load through the breaker, else stale."""
        try:
            # An entry a change marked stale is loaded even while the breaker is open: the change
            # itself shows the dependency answered its writer a moment ago.
            changed = cache.state(key) == CHANGED
            value = await cache._load(key, lambda: self._guarded(loader, changed))
        except self._caught as exc:
            stale = cache.peek(key)
            if stale is None:
                cache.misses += 1
                if self.unavailable is not None:
                    raise ServiceUnavailable(self.unavailable) from exc
                if isinstance(exc, _Open):
                    raise ServiceUnavailable(f"{self.dependency} unavailable") from None
                raise
            cache.rearm(key, stale, self.breaker.open_seconds)
            self.serve(cache, key, stale)
            return stale
        cache.misses += 1
        return value

    async def _guarded(self, loader: Loader[V], changed: bool = False) -> V | None:
        breaker = self.breaker
        if not breaker.allow() and not changed:
            raise _Open
        try:
            value = await loader()
        except self.errors:
            self._failed()
            raise
        except asyncio.CancelledError:
            self._failed()  # the probe slot must not be lost (`tenancy/breaker.py`)
            raise
        except BaseException:
            breaker.success()  # the dependency answered; the loader itself refused
            raise
        if breaker.state != "closed":
            log.warning("%s reachable again", self.dependency)
        breaker.success()
        return value

    def _failed(self) -> None:
        trips = self.breaker.trips
        self.breaker.failure()
        if self.breaker.trips != trips:
            log.error(
                "%s unreachable: loads paused for %gs (then one probe)",
                self.dependency,
                self.breaker.open_seconds,
            )

    def serve(self, cache: Cache[V], key: Key, value: V) -> None:
        """Count a stale answer; log it once per tenant per window."""
        cache.stale += 1
        self.served += 1
        owner = cache.owner(key, value)
        now = time.monotonic()
        if now - self._logged.get(owner, -math.inf) < LOG_EVERY_SECONDS:
            return
        if len(self._logged) >= LOG_OWNERS_MAX:
            self._logged.clear()
        self._logged[owner] = now
        log.warning(
            "%s unreachable, serving cached %s of %s (logged once per %gs)",
            self.dependency,
            cache.name,
            owner,
            LOG_EVERY_SECONDS,
        )


def registry_policy(breaker: Breaker | None = None) -> StaleOnError:
    return StaleOnError(
        "registry", (SQLAlchemyError, OSError), "Registry unavailable", breaker=breaker
    )


def kv_policy(breaker: Breaker | None = None) -> StaleOnError:
    # The KV backends already raise ServiceUnavailable with their own message (`tenancy/kv`).
    return StaleOnError("kv", (ServiceUnavailable,), breaker=breaker)


class Cache(Generic[V]):
    """A bounded, tenant-keyed cache; `get` loads through it, `lookup`/`put` fill it by hand.

    Eviction is least recently stored first. A hit on a value that never expires also moves it
    to the end (true LRU: nothing else would refresh it); a value with a TTL is reordered only
    when reloaded, which every live entry is at least once per TTL, so a hit there stays a dict
    lookup and a clock read.

    Each lookup counts as exactly one of: `hits` (a fresh value), `misses` (a load, whatever its
    outcome) or `stale` (a stale value answered: a failed reload, or within its re-armed window).
    """

    def __init__(
        self,
        name: str,
        ttl: float | None,
        *,
        max_entries: int = 100_000,
        miss_ttl: float = MISS_TTL_MAX,
        stale_on_error: StaleOnError | None = None,
        owner: Callable[[V], Hashable] | None = None,
    ) -> None:
        self.name = name
        self.ttl = math.inf if ttl is None else ttl
        self.miss_ttl = min(miss_ttl, MISS_TTL_MAX, self.ttl)
        self.max_entries = max_entries
        self.stale_on_error = stale_on_error
        # The project an entry belongs to: the key's first part, or (for caches keyed by
        # something else, e.g. a host) read from the value (`owner`).
        self._owner = owner
        self._reorder = ttl is None
        # key → (expires, value, state: FRESH, REARMED or CHANGED)
        self._entries: OrderedDict[Key, tuple[float, V | None, int]] = OrderedDict()
        self._inflight: dict[Key, asyncio.Future[V | None]] = {}
        self._generation = 0
        # Counters for /metrics, one per lookup (see the class docstring).
        self.hits = 0
        self.misses = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._entries)

    def owner(self, key: Key, value: V | None) -> Hashable:
        """The project `key`'s entry belongs to; None for a miss of a value-owned cache (it
        belongs to whichever project may create it, so any invalidation drops it)."""
        if self._owner is None:
            return key[0]
        return None if value is None else self._owner(value)

    def state(self, key: Key) -> int:
        """`FRESH`, `REARMED` or `CHANGED` (a missing entry counts as `FRESH`)."""
        entry = self._entries.get(key)
        return entry[2] if entry is not None else FRESH

    def peek(self, key: Key) -> V | None:
        """The cached value even if expired or marked stale (the stale fallback); not counted.
        Also the read of a cache of values derived in process that never expire, asked on
        every request (`Limiters.admit`): no clock, no reordering (eviction is then least
        recently stored first), a third of `lookup`'s work."""
        return self._entries.get(key, _ABSENT)[1]

    def fresh(self, key: Key) -> V | None:
        """The cached value if it is fresh (not expired, not stale); never loads, not counted."""
        entry = self._entries.get(key)
        if entry is None or entry[2] != FRESH or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def lookup(self, key: Key) -> V | None:
        """The fresh value, counted as a hit or a miss; for caches filled with `put`."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            self.hits += 1
            if self._reorder:
                self._entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        return None

    async def get(self, key: Key, loader: Loader[V]) -> V | None:
        """The fresh value, else `loader()`'s (run once for concurrent callers) and kept."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            if entry[2] == REARMED:
                assert self.stale_on_error is not None and entry[1] is not None
                self.stale_on_error.serve(self, key, entry[1])
                return entry[1]
            self.hits += 1
            if self._reorder:
                self._entries.move_to_end(key)
            return entry[1]
        if self.stale_on_error is not None:
            return await self.stale_on_error.load(self, key, loader)
        self.misses += 1
        return await self._load(key, loader)

    async def _load(self, key: Key, loader: Loader[V]) -> V | None:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        generation = self._generation
        try:
            value = await loader()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # a failure nobody else awaited must not be logged as lost
            raise
        finally:
            self._inflight.pop(key, None)
        if generation == self._generation:
            self.put(key, value)
        future.set_result(value)
        return value

    def put(self, key: Key, value: V | None) -> None:
        """Keep `value` (None: a miss, kept at most `miss_ttl`), evicting past the bound."""
        ttl = self.ttl if value is not None else self.miss_ttl
        self._entries[key] = (time.monotonic() + ttl, value, FRESH)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def rearm(self, key: Key, value: V, seconds: float) -> None:
        """Answer the stale `value` for `seconds` without loading (a dependency's back-off)."""
        if key in self._entries:
            self._entries[key] = (time.monotonic() + seconds, value, REARMED)

    def discard(self, key: Key) -> None:
        self._entries.pop(key, None)

    def invalidate(
        self, project: str | None = None, *, drop: bool = False, changed: bool = True
    ) -> None:
        """A change to one project (None: to anything): its entries must not be served fresh.

        With a stale-on-error policy they are marked stale: the next lookup reloads, and only
        if the dependency fails is the old value answered (stale-while-error holds across a
        change). Without one, or with `drop` (a change that takes access away, where serving
        the old value would fail open: `docs/tenancy.md`), they are deleted. Misses are always
        deleted. Loads under way are not stored. `changed=False` (a resync: nothing is known to
        have changed) marks entries stale without the one load past an open breaker that a
        change earns (`StaleOnError.load`).
        """
        self._generation += 1
        keep = self.stale_on_error is not None and not drop
        for key, (_, value, _) in list(self._entries.items()):
            if project is not None:
                owner = self.owner(key, value)
                if owner is not None and owner != project:
                    continue
            if keep and value is not None:
                self._entries[key] = (-math.inf, value, CHANGED if changed else FRESH)
            else:
                del self._entries[key]
