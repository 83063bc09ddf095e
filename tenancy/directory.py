"""Cached, tenant-keyed lookups for the request path.

Everything the data plane reads about a tenant (project record, host, API key, manifest, release,
decrypted connection or named secret, signing keys) comes through here, each through a
`tenancy.cache.Cache`: the cache rules of `docs/tenancy.md` live in that toolkit, what each change
invalidates lives in `invalidate` below.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.cache import KV, REGISTRY, Cache
from tenancy.errors import NotFound, ServiceUnavailable, StkError
from tenancy.pools import engine_of
from tenancy.principal import Principal, Tenant
from tenancy.registry import queries
from tenancy.registry.models import Secret
from tenancy.registry.records import (
    ConnectionInfo,
    ProjectRecord,
    VersionedSecret,
)
from tenancy.releases.manifest import Manifest
from tenancy.releases.model import Release
from tenancy.releases.store import ReleaseStore
from tenancy.resolution import ActiveKey
from tenancy.tokens import SigningKeys
from tenancy.vault import Vault, VaultError

log = logging.getLogger("stk.directory")


class Directory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: Vault,
        releases: ReleaseStore,
        ttl: float,
        release_cache_size: int = 1024,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._releases = releases
        self.projects: Cache[ProjectRecord] = Cache("project", ttl, stale_on_error=REGISTRY)
        self.hosts: Cache[str] = Cache("host", ttl, stale_on_error=REGISTRY)
        self.api_keys: Cache[ActiveKey] = Cache("apikey", ttl, stale_on_error=REGISTRY)
        self.manifests: Cache[Manifest] = Cache("manifest", ttl, stale_on_error=KV)
        self.connections: Cache[ConnectionInfo] = Cache("connection", ttl, stale_on_error=REGISTRY)
        self.secrets: Cache[VersionedSecret] = Cache("secret", ttl, stale_on_error=REGISTRY)
        # Loaded once per bundle: a release is immutable and named by its hash.
        self.releases: Cache[Release] = Cache("release", None, max_entries=release_cache_size)
        self.signing = SigningKeys(sessions, vault, ttl)

    @property
    def caches(self) -> tuple[Cache[Any], ...]:
        return (
            self.projects,
            self.hosts,
            self.api_keys,
            self.manifests,
            self.connections,
            self.secrets,
            self.releases,
            *self.signing.caches,
        )

    def invalidate(self, kind: str, project: str | None) -> None:
        """Drop what a change may have made stale.

        Hosts and API keys are keyed by host and key id (the project is unknown before the
        lookup), so they are dropped whole: they are few and cheap to reload. Releases never
        change (a new one has a new id), so they go only with their project.
        """
        caches = (self.projects, self.manifests, self.connections, self.secrets)
        for cache in (*caches, *self.signing.caches):
            cache.invalidate(project)
        self.hosts.invalidate()
        self.api_keys.invalidate()
        if kind == "project.delete" and project is not None:
            self.releases.invalidate(project)

    async def project(self, project_id: str) -> ProjectRecord | None:
        async def load() -> ProjectRecord | None:
            async with self._sessions() as session:
                return await queries.project_record(session, project_id)

        return await self.projects.get((project_id,), load)

    async def project_for_host(self, host: str) -> str | None:
        async def load() -> str | None:
            async with self._sessions() as session:
                return await queries.host_project(session, host)

        return await self.hosts.get(("*host*", host), load)

    async def api_key(self, key_id: str) -> ActiveKey | None:
        """The active key `key_id`, its check derived once per load (`resolution.ActiveKey`)."""

        async def load() -> ActiveKey | None:
            async with self._sessions() as session:
                record = await queries.api_key_record(session, key_id)
            return ActiveKey.of(record) if record is not None else None

        return await self.api_keys.get(("*key*", key_id), load)

    async def verify_bearer(self, project_id: str | None, token: str) -> tuple[Tenant, Principal]:
        return await self.signing.verify(project_id, token)

    def has_release(self, project: str, release_id: str) -> bool:
        return self.releases.peek((project, release_id)) is not None

    async def release(self, tenant: Tenant) -> Release:
        manifest = await self.manifests.get(
            (tenant.project,), lambda: self._releases.get_manifest(tenant.project)
        )
        release_id = manifest.release(tenant.env) if manifest is not None else None
        if release_id is None:
            raise NotFound("No release published for this environment")

        async def load() -> Release:
            try:
                body = await self._releases.get_bundle(tenant.project, release_id)
            except ServiceUnavailable:
                raise
            except StkError:
                raise ServiceUnavailable("Release unavailable") from None
            return Release.load(body)

        release = await self.releases.get((tenant.project, release_id), load)
        assert release is not None  # the loader raises rather than answer None
        return release

    async def connection(self, tenant: Tenant, alias: str) -> ConnectionInfo:
        async def load() -> ConnectionInfo | None:
            async with self._sessions() as session:
                row = await session.get(Secret, (tenant.project, tenant.env, "connection", alias))
                if row is None:
                    return None
                try:
                    url = (await self._vault.open(session, row)).decode()
                except VaultError as exc:
                    log.error("connection secret unusable: %s", exc)
                    raise ServiceUnavailable("Tenant database credentials unavailable") from None
                return ConnectionInfo(alias, url, row.version, engine_of(url))

        info = await self.connections.get((tenant.project, tenant.env, alias), load)
        if info is None:
            raise ServiceUnavailable(f"Connection '{alias}' is not configured")
        return info

    async def secret(self, tenant: Tenant, name: str) -> VersionedSecret | None:
        """A named tenant secret (`PUT .../secrets/{NAME}`), None when the env has none by that
        name. Dropped with the tenant's other entries on `secret.set` / `secret.delete`."""

        async def load() -> VersionedSecret | None:
            async with self._sessions() as session:
                row = await session.get(Secret, (tenant.project, tenant.env, "secret", name))
                if row is None:
                    return None
                try:
                    value = await self._vault.open(session, row)
                except VaultError as exc:
                    log.error("tenant secret unusable: %s", exc)
                    raise ServiceUnavailable("Tenant secret unavailable") from None
                return VersionedSecret(row.version, value)

        return await self.secrets.get((tenant.project, tenant.env, name), load)
