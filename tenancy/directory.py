"""Cached, tenant-keyed lookups for the request path.

Everything the data plane reads about a tenant comes through here, so the cache rules of
`tenancy.md` live in one place: TTL as a backstop, misses kept ≤ 1 s, single flight, entries
keyed by project first (dropped by invalidation), and stale-while-error when the registry or the
KV store is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.cache import TTLCache
from tenancy.errors import NotFound, ServiceUnavailable, StkError
from tenancy.limits import Limits
from tenancy.pools import engine_of
from tenancy.principal import Principal, Tenant
from tenancy.registry.models import ApiKey, Env, Project, ProjectHost, Secret, utcnow
from tenancy.registry.records import ApiKeyRecord, ConnectionInfo, ProjectRecord
from tenancy.releases.model import Release
from tenancy.releases.store import ReleaseStore
from tenancy.tokens import SigningKeys
from tenancy.vault import Vault, VaultError

log = logging.getLogger("stk.directory")
T = TypeVar("T")
TOUCH_EVERY = 60.0


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
        self.projects: TTLCache[ProjectRecord] = TTLCache("project", ttl)
        self.hosts: TTLCache[str] = TTLCache("host", ttl)
        self.api_keys: TTLCache[ApiKeyRecord] = TTLCache("apikey", ttl)
        self.manifests: TTLCache[dict[str, Any]] = TTLCache("manifest", ttl)
        self.connections: TTLCache[ConnectionInfo] = TTLCache("connection", ttl)
        self.signing = SigningKeys(sessions, vault, ttl)
        self._release_objects: OrderedDict[tuple[str, str], Release] = OrderedDict()
        self._release_cache_size = release_cache_size
        self._touched: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._last_errors: dict[tuple[str, str], str] = {}

    @property
    def caches(self) -> tuple[TTLCache[Any], ...]:
        return (
            self.projects,
            self.hosts,
            self.api_keys,
            self.manifests,
            self.connections,
            self.signing.cache,
        )

    def invalidate(self, kind: str, project: str | None, env: str | None = None) -> None:
        """Drop what a change may have made stale.

        Hosts and API keys are keyed by host and key id (the project is unknown before the
        lookup), so they are dropped whole: they are few and cheap to reload.
        """
        for cache in (self.projects, self.manifests, self.connections, self.signing.cache):
            cache.invalidate(project)
        self.hosts.invalidate()
        self.api_keys.invalidate()
        if kind == "project.delete" and project is not None:
            for key in [k for k in self._release_objects if k[0] == project]:
                del self._release_objects[key]

    async def _cached(
        self,
        cache: TTLCache[T],
        key: tuple[Hashable, ...],
        loader: Callable[[], Awaitable[T | None]],
    ) -> T | None:
        try:
            return await cache.get(key, loader)
        except (SQLAlchemyError, OSError) as exc:
            stale = cache.peek(key)
            if stale is not None:
                log.warning("registry unreachable, serving cached %s", cache.name)
                return stale
            raise ServiceUnavailable("Registry unavailable") from exc

    async def project(self, project_id: str) -> ProjectRecord | None:
        return await self._cached(
            self.projects, (project_id,), lambda: self._load_project(project_id)
        )

    async def _load_project(self, project_id: str) -> ProjectRecord | None:
        async with self._sessions() as session:
            return await load_project_record(session, project_id)

    async def project_for_host(self, host: str) -> str | None:
        async def load() -> str | None:
            async with self._sessions() as session:
                row = await session.get(ProjectHost, host)
                return row.project if row is not None else None

        return await self._cached(self.hosts, ("*host*", host), load)

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        async def load() -> ApiKeyRecord | None:
            async with self._sessions() as session:
                row = await session.get(ApiKey, key_id)
                return api_key_record(row) if row is not None else None

        return await self._cached(self.api_keys, ("*key*", key_id), load)

    def touch_api_key(self, key_id: str) -> None:
        """Record use at most once a minute per key, off the request path."""
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_EVERY) < TOUCH_EVERY:
            return
        self._touched[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_last_used(key_id))
        self._writes.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._writes.discard)

    async def _write_last_used(self, key_id: str) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(ApiKey).where(ApiKey.key_id == key_id).values(last_used_at=utcnow())
                )
        except (SQLAlchemyError, OSError):
            log.warning("could not record API key use")

    async def verify_bearer(self, project_id: str | None, token: str) -> tuple[Tenant, Principal]:
        return await self.signing.verify(project_id, token)

    def has_release(self, project: str, release_id: str) -> bool:
        return (project, release_id) in self._release_objects

    def last_error(self, project: str, env: str) -> str | None:
        return self._last_errors.get((project, env))

    def record_error(self, tenant: Tenant, message: str) -> None:
        """Remembered for the admin status view; messages are the envelope's, never secrets."""
        self._last_errors[(tenant.project, tenant.env)] = message

    async def release(self, tenant: Tenant) -> Release:
        manifest = await self._manifest(tenant.project)
        entry = (manifest or {}).get("envs", {}).get(tenant.env)
        if not entry:
            raise NotFound("No release published for this environment")
        release_id: str = entry["release"]
        key = (tenant.project, release_id)
        release = self._release_objects.get(key)
        if release is None:
            try:
                body = await self._releases.get_bundle(tenant.project, release_id)
            except ServiceUnavailable:
                raise
            except StkError:
                raise ServiceUnavailable("Release unavailable") from None
            release = Release.load(body)
            self._release_objects[key] = release
            while len(self._release_objects) > self._release_cache_size:
                self._release_objects.popitem(last=False)
        else:
            self._release_objects.move_to_end(key)
        return release

    async def _manifest(self, project: str) -> dict[str, Any] | None:
        try:
            return await self.manifests.get(
                (project,), lambda: self._releases.get_manifest(project)
            )
        except ServiceUnavailable:
            stale = self.manifests.peek((project,))
            if stale is None:
                raise
            log.warning("KV store unreachable, serving cached manifest")
            return stale

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

        info = await self._cached(self.connections, (tenant.project, tenant.env, alias), load)
        if info is None:
            raise ServiceUnavailable(f"Connection '{alias}' is not configured")
        return info


async def load_project_record(session: AsyncSession, project_id: str) -> ProjectRecord | None:
    row = await session.get(Project, project_id)
    if row is None:
        return None
    envs = (await session.scalars(select(Env.id).where(Env.project == project_id))).all()
    hosts = (
        await session.scalars(select(ProjectHost.host).where(ProjectHost.project == project_id))
    ).all()
    return ProjectRecord(
        id=row.id,
        status=row.status,
        default_env=row.default_env,
        envs=tuple(sorted(envs)),
        hosts=tuple(sorted(hosts)),
        limits=Limits.parse(row.limits or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def api_key_record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        project=row.project,
        env=row.env,
        name=row.name,
        roles=tuple(row.roles or ()),
        status=row.status,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )
