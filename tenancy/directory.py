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

from tenancy.cache import Cache, StaleOnError, kv_policy, registry_policy
from tenancy.errors import NotFound, ServiceUnavailable, StkError
from tenancy.invalidation import RESYNC
from tenancy.pools import engine_of
from tenancy.principal import Principal, Tenant
from tenancy.registry import queries
from tenancy.registry.models import Secret
from tenancy.registry.records import (
    AdminTokenRecord,
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
# Changes that take access away drop entries instead of marking them stale, but only the
# caches (by name) that carry that access; None: every cache of the project. The others are
# marked stale as for any change and stay the fallback: revoking one key during a KV outage must
# not take the tenant's release with it (`docs/tenancy.md`, "Invalidation").
REVOKES: dict[str, frozenset[str] | None] = {
    "apikey.revoke": frozenset({"apikey"}),
    "connection.delete": frozenset({"connection"}),
    "project.delete": None,
    "project.disable": None,
    "env.delete": None,
}


def _key_project(key: ActiveKey) -> str:
    return key.tenant.project


def _token_project(record: AdminTokenRecord) -> str | None:
    return record.project


class Directory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reads: async_sessionmaker[AsyncSession],
        vault: Vault,
        releases: ReleaseStore,
        ttl: float,
        release_cache_size: int = 1024,
        *,
        registry: StaleOnError | None = None,
        kv: StaleOnError | None = None,
    ) -> None:
        # Every lookup here is a read: in autocommit, a cold tenant's lookups cost their
        # statements, not a BEGIN and a ROLLBACK each (`docs/decisions.md`, cold tenants).
        self._sessions = reads
        self._vault = vault
        self._releases = releases
        # One policy (and circuit breaker) per dependency, shared by the caches reading it.
        self.registry = registry = registry or registry_policy()
        self.kv = kv = kv or kv_policy()
        self.projects: Cache[ProjectRecord] = Cache("project", ttl, stale_on_error=registry)
        # Keyed by host / key id (the project is not known before the lookup); the value names
        # the project, so a change to one project marks only its hosts and keys stale.
        self.hosts: Cache[str] = Cache("host", ttl, stale_on_error=registry, owner=str)
        self.api_keys: Cache[ActiveKey] = Cache(
            "apikey", ttl, stale_on_error=registry, owner=_key_project
        )
        # Scoped admin tokens, keyed by id; a token of every project has no owner.
        self.admin_tokens: Cache[AdminTokenRecord] = Cache(
            "admintoken", ttl, stale_on_error=registry, owner=_token_project
        )
        self.manifests: Cache[Manifest] = Cache("manifest", ttl, stale_on_error=kv)
        self.connections: Cache[ConnectionInfo] = Cache("connection", ttl, stale_on_error=registry)
        self.secrets: Cache[VersionedSecret] = Cache("secret", ttl, stale_on_error=registry)
        # Loaded once per bundle: a release is immutable and named by its hash.
        self.releases: Cache[Release] = Cache("release", None, max_entries=release_cache_size)
        self.signing = SigningKeys(sessions, vault, ttl, registry)

    @property
    def dependencies(self) -> tuple[StaleOnError, ...]:
        return (self.registry, self.kv)

    @property
    def caches(self) -> tuple[Cache[Any], ...]:
        return (
            self.projects,
            self.hosts,
            self.api_keys,
            self.admin_tokens,
            self.manifests,
            self.connections,
            self.secrets,
            self.releases,
            *self.signing.caches,
        )

    def invalidate(self, kind: str, project: str | None) -> None:
        """Mark stale what a change may have made stale (`docs/tenancy.md`, "Invalidation").

        Entries are marked, not dropped, so a tenant whose reload fails is still served its
        last value (stale-while-error). A change that takes access away (`REVOKES`) drops the
        project's entries that carry it instead: a revoked key or deleted project must never be
        served from a stale copy. Releases never change (a new one has a new id), so they go
        only with their project.
        """
        if kind.startswith("admintoken."):
            # Tokens are few and keyed by id: any change drops them all, so a revocation is
            # final on this replica as soon as the broadcast arrives (`docs/admin.md`).
            self.admin_tokens.invalidate(drop=True)
            return
        dropped = REVOKES.get(kind, frozenset())
        for cache in self.caches:
            if cache is self.releases:
                continue
            drop = dropped is None or cache.name in dropped
            cache.invalidate(project, drop=drop, changed=kind != RESYNC)
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

    async def admin_token(self, token_id: str) -> AdminTokenRecord | None:
        """A scoped admin token by id (`docs/admin.md`), revoked ones included."""

        async def load() -> AdminTokenRecord | None:
            async with self._sessions() as session:
                return await queries.admin_token_record(session, token_id)

        return await self.admin_tokens.get(("*admintoken*", token_id), load)

    async def _sealed(self, tenant: Tenant, kind: str, name: str) -> tuple[Secret, bytes] | None:
        """A sealed row of the tenant and its plaintext; one that does not decrypt is the
        keyring's fault, logged for the operator and a 503 for the caller."""
        try:
            async with self._sessions() as session:
                return await self._vault.read(session, tenant.project, tenant.env, kind, name)
        except VaultError as exc:
            log.error("%s %s unusable: %s", kind, name, exc)
            what = "database credentials" if kind == "connection" else "secret"
            raise ServiceUnavailable(f"Tenant {what} unavailable") from None

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
            found = await self._sealed(tenant, "connection", alias)
            if found is None:
                return None
            row, plain = found
            url = plain.decode()
            return ConnectionInfo(
                alias, url, row.version, engine_of(url), row.meta.get("pooler", "none")
            )

        info = await self.connections.get((tenant.project, tenant.env, alias), load)
        if info is None:
            raise ServiceUnavailable(f"Connection '{alias}' is not configured")
        return info

    async def secret(self, tenant: Tenant, name: str) -> VersionedSecret | None:
        """A named tenant secret (`PUT .../secrets/{NAME}`), None when the env has none by that
        name. Dropped with the tenant's other entries on `secret.set` / `secret.delete`."""

        async def load() -> VersionedSecret | None:
            found = await self._sealed(tenant, "secret", name)
            return VersionedSecret(found[0].version, found[1]) if found is not None else None

        return await self.secrets.get((tenant.project, tenant.env, name), load)
