"""In-process TTL cache with single flight, keyed by tenant.

Keys are tuples whose first element is the project, so an invalidation for one project drops
exactly that project's entries (`tenancy.md` I2). A loader returning None is a miss; misses are
kept at most `miss_ttl` seconds so a just-created tenant is seen quickly.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
Key = tuple[Hashable, ...]


class TTLCache(Generic[V]):
    def __init__(self, name: str, ttl: float, *, miss_ttl: float = 1.0, max_entries: int = 100_000):
        self.name = name
        self.ttl = ttl
        self.miss_ttl = min(miss_ttl, ttl)
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[float, V | None]] = OrderedDict()
        self._inflight: dict[Key, asyncio.Future[V | None]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def peek(self, key: Key) -> V | None:
        """The cached value even if expired: stale-while-error fallback."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def fresh(self, key: Key) -> V | None:
        """The cached value if it has not expired; never loads."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    async def get(self, key: Key, loader: Callable[[], Awaitable[V | None]]) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            self.hits += 1
            return entry[1]
        self.misses += 1
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
            self._store(key, value)
        future.set_result(value)
        return value

    def _store(self, key: Key, value: V | None) -> None:
        ttl = self.ttl if value is not None else self.miss_ttl
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, project: str | None = None) -> None:
        """Drop one project's entries, or everything. Loads under way are not stored."""
        self._generation += 1
        if project is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if k[0] == project]:
            del self._entries[key]
