"""The last server-side failure per tenant, for the admin status view (`docs/admin.md`).

Not a cache: it is the only copy of what it holds, nothing loads it and nothing makes it stale.
It is bounded by the registry (one message per existing env) and a tenant's entries go when the
env or project is deleted (`Runtime._on_invalidation`). Messages are the error envelope's, which
are safe to show, never secrets.
"""

from __future__ import annotations

from tenancy.principal import Tenant


class LastErrors:
    def __init__(self) -> None:
        self._messages: dict[Tenant, str] = {}

    def record(self, tenant: Tenant, message: str) -> None:
        self._messages[tenant] = message

    def get(self, tenant: Tenant) -> str | None:
        return self._messages.get(tenant)

    def forget(self, project: str, env: str | None = None) -> None:
        """Drop one env's entry, or every entry of the project."""
        for tenant in [t for t in self._messages if t.project == project]:
            if env is None or tenant.env == env:
                del self._messages[tenant]
