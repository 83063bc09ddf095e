"""Registering thousands of tenants quickly: straight into the registry and the KV store.

Through the admin API a tenant takes several round trips and a connection check; 10,000 of them
would eat the time budget. This writes what the API writes, in batches: the project and its
`prod` env, a fresh data key wrapped by the master key, the `main` connection URL sealed under
that data key (so each tenant's secret is its own ciphertext), an API key where asked, and what
a publish leaves in the KV store (the tenant's own bundle key and a manifest pointing `prod` at
it). Audit entries are left out: nothing on the request path reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import redis.asyncio as aioredis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenancy import credentials, sealing
from tenancy.keyring import Keyring, new_dek
from tenancy.registry.models import ApiKey, DataKey, Env, Project, Secret
from tenancy.releases.compile.compiler import CompiledRelease
from tenancy.vault import aad_name

ENV = "prod"
BATCH = 1000


@dataclass(frozen=True)
class Tenant:
    project: str
    host: str
    api_key: str | None


def project_id(index: int) -> str:
    return f"t{index:05d}"


def _redis(kv_url: str) -> tuple[aioredis.Redis, str]:
    parts = urlsplit(kv_url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", [""])[0]
    url = parts._replace(query=urlencode(query, doseq=True)).geturl()
    return aioredis.Redis.from_url(url), prefix


async def register(
    registry_url: str,
    kv_url: str,
    keyring: Keyring,
    release: CompiledRelease,
    indexes: range,
    database_urls: list[str],
    keyed: set[int],
    host_suffix: str,
) -> list[Tenant]:
    """Tenants `project_id(i)` for i in `indexes`; tenant i uses database i % len(urls)."""
    engine = create_async_engine(registry_url)
    client, prefix = _redis(kv_url)
    tenants: list[Tenant] = []
    try:
        for start in range(indexes.start, indexes.stop, BATCH):
            batch = range(start, min(start + BATCH, indexes.stop))
            tenants += await _batch(
                engine, client, prefix, keyring, release, batch, database_urls, keyed, host_suffix
            )
    finally:
        await engine.dispose()
        await client.aclose()
    return tenants


async def _batch(
    engine: AsyncEngine,
    client: aioredis.Redis,
    prefix: str,
    keyring: Keyring,
    release: CompiledRelease,
    batch: range,
    database_urls: list[str],
    keyed: set[int],
    host_suffix: str,
) -> list[Tenant]:
    now = datetime.now(UTC)
    projects, envs, keys, secrets, api_keys, tenants = [], [], [], [], [], []
    for i in batch:
        project = project_id(i)
        dek = new_dek()
        kid, wrapped = keyring.wrap_dek(project, dek)
        url = database_urls[i % len(database_urls)]
        name = aad_name("connection", "main")
        projects.append(
            {"id": project, "status": "active", "default_env": ENV, "limits": {}}
            | {"created_at": now, "updated_at": now}
        )
        envs.append({"project": project, "id": ENV, "created_at": now})
        keys.append({"project": project, "kid": kid, "wrapped": wrapped, "generation": 1})
        secrets.append(
            {"project": project, "env": ENV, "kind": "connection", "name": "main", "version": 1}
            | {"ciphertext": sealing.seal(dek, project, ENV, name, 1, url.encode())}
            | {"meta": {"engine": "postgresql"}, "updated_at": now}
        )
        api_key = None
        if i in keyed:
            new = credentials.new_api_key()
            api_key = new.api_key
            api_keys.append(
                {"key_id": new.key_id, "project": project, "env": ENV, "name": "bench"}
                | {"roles": ["writer"], "status": "active", "secret_hash": new.secret_hash}
                | {"created_at": now}
            )
        tenants.append(Tenant(project, f"{project}.{host_suffix}", api_key))
    async with engine.begin() as conn:
        await conn.execute(insert(Project), projects)
        await conn.execute(insert(Env), envs)
        await conn.execute(insert(DataKey), keys)
        await conn.execute(insert(Secret), secrets)
        if api_keys:
            await conn.execute(insert(ApiKey), api_keys)
    published = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    entry = {"release": release.id, "ref": None, "publishedAt": published}
    async with client.pipeline(transaction=False) as pipe:
        for tenant in tenants:
            manifest = {
                "project": tenant.project,
                "revision": 1,
                "envs": {ENV: {**entry, "history": [entry]}},
            }
            pipe.set(f"{prefix}bundle:{tenant.project}:{release.id}", release.body)
            pipe.set(f"{prefix}manifest:{tenant.project}", orjson.dumps(manifest))
        await pipe.execute()
    return tenants
