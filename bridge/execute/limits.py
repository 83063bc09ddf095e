"""Per-tenant concurrency limit (`tenancy.md` I7): a tenant's excess is shed with 503 at once
rather than queued, so a slow tenant cannot hold the event loop's attention for others."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tenancy.errors import ServiceUnavailable
from tenancy.principal import Tenant


class ConcurrencyLimiter:
    def __init__(self) -> None:
        self._active: dict[Tenant, int] = {}

    @contextmanager
    def slot(self, tenant: Tenant, limit: int) -> Iterator[None]:
        active = self._active.get(tenant, 0)
        if active >= limit:
            raise ServiceUnavailable("Too many concurrent requests for this project")
        self._active[tenant] = active + 1
        try:
            yield
        finally:
            remaining = self._active[tenant] - 1
            if remaining:
                self._active[tenant] = remaining
            else:
                del self._active[tenant]
