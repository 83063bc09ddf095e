"""The process-wide core, wired once at start-up and shared by the HTTP layer and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenancy import audit
from tenancy.cache import Cache, StaleOnError, kv_policy, registry_policy
from tenancy.crud.sql import SELECTS
from tenancy.crud.views import GRANTS, VIEWS
from tenancy.directory import Directory
from tenancy.invalidation import InvalidationBus
from tenancy.keyring import Keyring
from tenancy.keyusage import KeyUsage
from tenancy.kv import KVStore, open_kv
from tenancy.lasterrors import LastErrors
from tenancy.limits import CallerLimits, HashBulkhead, Limiters
from tenancy.openapi import DOCUMENTS
from tenancy.outbox import Outbox
from tenancy.pools import PoolManager
from tenancy.registry import migrate
from tenancy.registry.db import create_registry_engine, session_factory
from tenancy.releases.store import ReleaseStore
from tenancy.settings import Settings
from tenancy.storage.service import StorageService
from tenancy.storage.sessions import MultipartSessions
from tenancy.storage.store import TenantStores
from tenancy.usage import Usage
from tenancy.vault import Vault

log = logging.getLogger("stk.runtime")
AUDIT_PRUNE_EVERY_SECONDS = 6 * 3600
# Changes after which a tenant's open pools must drain and close (new requests reconnect).
RETIRES_POOLS = frozenset(
    {"project.delete", "project.disable", "env.delete", "connection.set", "connection.delete"}
)
# Changes after which a tenant's object-store keys and clients must go (`docs/storage.md`).
RETIRES_STORES = frozenset({"project.delete", "env.delete", "secret.set", "secret.delete"})
# Changes after which a tenant's last recorded error no longer describes anything.
FORGETS_ERRORS = frozenset({"project.delete", "env.delete"})


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: Vault
    kv: KVStore
    releases: ReleaseStore
    pools: PoolManager
    bus: InvalidationBus
    directory: Directory
    key_usage: KeyUsage
    last_errors: LastErrors
    limits: Limiters
    storage: StorageService
    usage: Usage
    outbox: Outbox
    _background: tuple[asyncio.Task[None], ...] = ()

    @classmethod
    async def start(cls, settings: Settings, keyring: Keyring, *, migrate_schema: bool) -> Runtime:
        engine = create_registry_engine(settings.registry, settings.registry_timeouts())
        if migrate_schema:
            # A PostgreSQL upgrade may wait for a peer's lock longer than a command may, so it
            # runs on an unbounded engine of its own (`docs/decisions.md`); SQLite has no peers.
            sqlite = engine.dialect.name == "sqlite"
            upgrading = engine if sqlite else create_registry_engine(settings.registry)
            try:
                await migrate.upgrade(upgrading, keyring=keyring)
            finally:
                if upgrading is not engine:
                    await upgrading.dispose()
        kv = open_kv(
            settings.kv,
            s3_credentials=settings.kv_s3_credentials(),
            redis=settings.redis_options(),
        )
        releases = ReleaseStore(kv)
        vault = Vault(keyring)
        sessions = session_factory(engine)
        directory = Directory(
            sessions,
            session_factory(engine, autocommit=True),
            vault,
            releases,
            settings.cache_ttl_seconds,
            registry=registry_policy(settings.dependency_breaker()),
            kv=kv_policy(settings.dependency_breaker()),
        )
        bus = InvalidationBus(settings.shared_redis, settings.redis_options())
        rt = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            vault=vault,
            kv=kv,
            releases=releases,
            pools=PoolManager(
                max_per_tenant=settings.pool_max_per_tenant,
                max_total=settings.pool_max_total,
                timeout_ms=settings.pool_timeout_ms,
                idle_seconds=settings.pool_idle_seconds,
                statement_timeout_ms=settings.statement_timeout_ms,
                connect_timeout_ms=settings.tenant_connect_timeout_ms,
                breaker_failures=settings.tenant_breaker_failures,
                breaker_open_seconds=settings.tenant_breaker_open_seconds,
            ),
            bus=bus,
            directory=directory,
            key_usage=KeyUsage(sessions),
            last_errors=LastErrors(),
            limits=Limiters(
                settings.shared_redis,
                settings.tenant_max_concurrency,
                HashBulkhead(
                    settings.password_hash_threads,
                    settings.password_hash_per_tenant,
                    settings.password_hash_queue,
                ),
                CallerLimits(
                    settings.rate_per_api_key,
                    settings.rate_per_user,
                    settings.rate_per_address,
                    settings.auth_free_failures_per_email,
                    settings.auth_free_failures_per_address,
                ),
                settings.auth_backoff_max_seconds,
                settings.auth_failure_window_seconds,
                redis=settings.redis_options(),
                breaker=settings.dependency_breaker(),
            ),
            storage=StorageService(
                secrets=directory.secret,
                stores=TenantStores(timeout=settings.storage_timeout_seconds),
                sessions=MultipartSessions(kv),
            ),
            usage=Usage(sessions),
            outbox=Outbox(sessions, releases, bus),
        )
        rt.bus.subscribe(rt._on_invalidation)
        await rt.bus.start()
        rt._background = (
            asyncio.create_task(rt.pools.run_janitor(min(30.0, settings.pool_idle_seconds))),
            asyncio.create_task(rt._prune_audit_periodically()),
            asyncio.create_task(rt._meter_periodically()),
            # Pointer moves a process left unaudited or unannounced (`tenancy/outbox.py`).
            asyncio.create_task(rt.outbox.drain_periodically()),
        )
        return rt

    async def prune_audit(self) -> int:
        """Drop audit entries past `STK_AUDIT_RETENTION_DAYS`: the log's only removal."""
        async with self.transaction() as session:
            return await audit.prune(session, self.settings.audit_retention_days)

    async def _prune_audit_periodically(self) -> None:
        # Every replica may run it: deleting entries past the cut-off is idempotent.
        while True:
            try:
                removed = await self.prune_audit()
                if removed:
                    log.info("pruned %d audit entries past retention", removed)
            except (SQLAlchemyError, OSError):
                log.warning("audit pruning failed; retrying later")
            await asyncio.sleep(AUDIT_PRUNE_EVERY_SECONDS)

    async def _write_metering(self) -> None:
        """Usage counters and API-key uses, both recorded in memory on the request path."""
        await self.usage.flush()
        await self.key_usage.write()

    async def _meter_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.usage_flush_seconds)
            await self._write_metering()

    @property
    def caches(self) -> tuple[Cache[Any], ...]:
        """Every cache of the process, for `/metrics`."""
        return (
            *self.directory.caches,
            self.releases.bundles,
            self.key_usage.recent,
            self.storage.credentials,
            VIEWS,
            DOCUMENTS,
            GRANTS,
            SELECTS,
        )

    @property
    def dependencies(self) -> tuple[StaleOnError, ...]:
        """Each shared dependency's stale policy and breaker, for `/metrics`."""
        return self.directory.dependencies

    def _on_invalidation(self, kind: str, project: str | None, env: str | None) -> None:
        """What a change means for this process, wherever it was made (the one home of pool and
        store-client retirement: local admin changes and peers' broadcasts both arrive here)."""
        self.directory.invalidate(kind, project)
        if project is None:
            return
        if kind in RETIRES_POOLS:
            self.pools.retire(project, env)
        if kind in RETIRES_STORES:
            self.storage.retire(project, env)
        if kind in FORGETS_ERRORS:
            self.last_errors.forget(project, env)
        if kind == "project.delete":
            self.releases.bundles.invalidate(project)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._write_metering()  # what this process counted since the last write (SIGTERM)
        await self.bus.close()
        await self.limits.close()
        await self.pools.close_all()
        await self.storage.close()
        await self.kv.close()
        await self.engine.dispose()
