"""A circuit breaker for one dependency (`tenancy.md`, "Connection pools"; `decisions.md`).

closed → open after `threshold` consecutive failures → after `open_seconds`, half-open: exactly
one caller probes while every other is refused → closed on its success, open again on failure.
While open, callers fail fast instead of each paying the dependency's timeout.

Written by hand because it is a dozen lines of state that must stay synchronous and allocation
free on the request path (an `allow()` per call); the libraries wrap calls in their own async
context managers and exception filters. One instance per dependency: a tenant database (in
`tenancy/pools.py`), the registry and the KV store as the caches read them (`tenancy/cache.py`),
Redis for rate limits (`tenancy/limits.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]
# A shared dependency's breaker (registry, KV store, Redis) unless settings give another
# (`STK_DEPENDENCY_BREAKER_FAILURES`, `STK_DEPENDENCY_BREAKER_OPEN_SECONDS`).
DEPENDENCY_FAILURES = 1
DEPENDENCY_OPEN_SECONDS = 5.0


class Breaker:
    """Not thread-safe: one event loop. Every `allow()` that returns True must be followed by
    exactly one `success()` or `failure()` (a cancelled call counts as a failure), so the
    half-open probe slot is never lost."""

    __slots__ = (
        "_clock",
        "_opened_at",
        "_probing",
        "_streak",
        "failures",
        "open_seconds",
        "rejections",
        "threshold",
        "trips",
    )

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._streak = 0  # consecutive failures
        self._opened_at: float | None = None
        self._probing = False
        # Counters for metrics: failed calls, calls refused while open, closed/half-open → open.
        self.failures = 0
        self.rejections = 0
        self.trips = 0

    @classmethod
    def for_dependency(
        cls, threshold: int = DEPENDENCY_FAILURES, open_seconds: float = DEPENDENCY_OPEN_SECONDS
    ) -> Breaker:
        return cls(threshold, open_seconds)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.open_seconds:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go to the dependency now? In half-open, True for one caller at a time."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.open_seconds:
            self.rejections += 1
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._streak = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        self._streak += 1
        if self._probing or (self._opened_at is None and self._streak >= self.threshold):
            self.trips += 1
            self._opened_at = self._clock()
            self._probing = False
