"""A logic the compiler proves read-only is retried once on a fresh connection after a failover
broke its pooled one; a writing logic fails once (503) and is never run twice
(`docs/tenancy.md`, failover; `docs/logics.md`, read-only logics)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tenancy.principal import Tenant

from support.bridge import running_bridge
from support.world import World, demo_files, seed_postgresql

LOGICS = {"reader": "SELECT count(*) AS n FROM notes", "bump": "UPDATE counter SET n = n + 1"}


async def terminate_bridge_sessions(url: str) -> int:
    """Terminate every Bridge session on the tenant database, as a failover would."""
    admin = await asyncpg.connect(url)
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'stk-bridge'"
        )
        return killed
    finally:
        await admin.close()


async def counter(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        value: int = await conn.fetchval("SELECT n FROM counter")
        return value
    finally:
        await conn.close()


async def test_a_read_only_logic_survives_a_broken_connection_and_a_write_is_not_retried(
    pg_url: str, tmp_path: Path
) -> None:
    await seed_postgresql(pg_url)
    conn = await asyncpg.connect(pg_url)
    await conn.execute("CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)")
    await conn.close()
    async with running_bridge(tmp_path, pool_max_per_tenant=1) as bridge:
        world = World(bridge)
        await world.project("shop")
        await world.tenant("shop", "prod", pg_url, demo_files(**LOGICS))
        release = await bridge.rt.directory.release(Tenant("shop", "prod"))
        assert release.logics["reader"].read_only and not release.logics["bump"].read_only

        assert (await world.call("logics/reader", project="shop")).json() == {"data": [{"n": 4}]}
        assert await terminate_bridge_sessions(pg_url) == 1
        again = await world.call("logics/reader", project="shop")
        assert again.status_code == 200, again.text  # retried on a fresh connection

        assert await terminate_bridge_sessions(pg_url) == 1
        bump = await world.call("logics/bump", project="shop")
        assert bump.status_code == 503, bump.text
        assert bump.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert await counter(pg_url) == 0  # not run on a second connection
        assert (await world.call("logics/bump", project="shop")).status_code == 200
        assert await counter(pg_url) == 1
