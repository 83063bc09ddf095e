"""The cache toolkit: every in-process cache of tenant state is a `Cache` (`docs/tenancy.md`).

One class gives every cache the same rules, so a fix or a new rule lands once:

- a TTL as a backstop (`ttl=None`: the value never changes, e.g. a release named by its hash);
- an LRU bound (`max_entries`);
- misses (a loader answering None) kept at most `MISS_TTL_MAX` seconds, so a tenant created a
  moment ago is seen quickly;
- single flight: concurrent misses of one key run its loader once;
- keys start with the project, so `invalidate(project)` drops exactly that tenant's entries;
- what a failed load answers, decided by the one `StaleOnError` policy of the dependency the
  loader reads (`REGISTRY`, `KV`);
- hit / miss / stale counters, read by `/metrics` at scrape time (never per request).

The stale rules live in two places only, both here: `StaleOnError.recover` (what a failed load
serves) and `Cache.invalidate` (what a change does to an entry). Hand-written caches elsewhere
are a defect: extend this one (`docs/decisions.md`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from tenancy.errors import ServiceUnavailable

log = logging.getLogger("stk.cache")

V = TypeVar("V")
Key = tuple[Hashable, ...]
MISS_TTL_MAX = 1.0  # an unknown tenant is never remembered longer (`docs/tenancy.md`)


@dataclass(frozen=True, slots=True)
class StaleOnError:
    """What a cache answers when a load fails because `dependency` is unreachable.

    Today (`docs/tenancy.md`, stale-while-error): the last value the cache held for the key,
    however old; without one, 503 (`unavailable`, or the dependency's own error when None).
    One instance per dependency, shared by every cache loading from it.
    """

    dependency: str
    errors: tuple[type[Exception], ...]
    unavailable: str | None = None

    def recover(self, cache: Cache[V], key: Key, exc: Exception) -> V:
        stale = cache.peek(key)
        if stale is None:
            if self.unavailable is None:
                raise exc
            raise ServiceUnavailable(self.unavailable) from exc
        cache.stale += 1
        log.warning("%s unreachable, serving cached %s", self.dependency, cache.name)
        return stale


REGISTRY = StaleOnError("registry", (SQLAlchemyError, OSError), "Registry unavailable")
# The KV backends already raise ServiceUnavailable with their own message (`tenancy/kv`).
KV = StaleOnError("KV store", (ServiceUnavailable,))


class Cache(Generic[V]):
    """A bounded, tenant-keyed cache; `get` loads through it, `lookup`/`put` fill it by hand.

    Eviction is least recently stored first. A hit on a value that never expires also moves it
    to the end (true LRU: nothing else would refresh it); a value with a TTL is reordered only
    when reloaded, which every live entry is at least once per TTL, so a hit there stays a dict
    lookup and a clock read.
    """

    def __init__(
        self,
        name: str,
        ttl: float | None,
        *,
        max_entries: int = 100_000,
        miss_ttl: float = MISS_TTL_MAX,
        stale_on_error: StaleOnError | None = None,
    ) -> None:
        self.name = name
        self.ttl = math.inf if ttl is None else ttl
        self.miss_ttl = min(miss_ttl, MISS_TTL_MAX, self.ttl)
        self.max_entries = max_entries
        self.stale_on_error = stale_on_error
        self._reorder = ttl is None
        self._entries: OrderedDict[Key, tuple[float, V | None]] = OrderedDict()
        self._inflight: dict[Key, asyncio.Future[V | None]] = {}
        self._generation = 0
        # Counters for /metrics: `stale` counts the misses answered with a stale value.
        self.hits = 0
        self.misses = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: Key) -> V | None:
        """The cached value even if expired (the stale fallback); not counted."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def fresh(self, key: Key) -> V | None:
        """The cached value if it has not expired; never loads, not counted."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

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

    async def get(self, key: Key, loader: Callable[[], Awaitable[V | None]]) -> V | None:
        """The fresh value, else `loader()`'s (run once for concurrent callers) and kept."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            self.hits += 1
            if self._reorder:
                self._entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        policy = self.stale_on_error
        if policy is None:
            return await self._load(key, loader)
        try:
            return await self._load(key, loader)
        except policy.errors as exc:
            return policy.recover(self, key, exc)

    async def _load(self, key: Key, loader: Callable[[], Awaitable[V | None]]) -> V | None:
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
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: Key) -> None:
        self._entries.pop(key, None)

    def invalidate(self, project: str | None = None) -> None:
        """Drop one project's entries, or everything. Loads under way are not stored."""
        self._generation += 1
        if project is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if k[0] == project]:
            del self._entries[key]
