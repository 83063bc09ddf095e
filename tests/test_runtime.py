"""What a change means for this process (`Runtime._on_invalidation`, the one home of pool
retirement), API-key usage writes and the last-error store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import update

from tenancy.lasterrors import LastErrors
from tenancy.principal import Tenant
from tenancy.registry.models import ApiKey

from support.bridge import running_bridge
from support.faults import TcpProxy
from support.processes import master_keys
from support.services import asyncpg_url
from support.world import World

HOST = {"Host": "shop.api.example.com"}
STATS = {"path": "logics/public/stats"}


async def last_used(bridge, key_id: str):
    async with bridge.rt.sessions() as session:
        row = await session.get(ApiKey, key_id)
        return row.last_used_at if row is not None else None


async def test_a_key_use_is_written_at_most_once_a_minute(bridge) -> None:
    key = await World(bridge).demo("shop")
    key_id = key.removeprefix("stk_").split(".", 1)[0]
    headers = {**HOST, "X-Santokit-Api-Key": key}
    assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    await bridge.rt.key_usage.write()
    assert await last_used(bridge, key_id) is not None
    async with bridge.rt.sessions() as session, session.begin():
        await session.execute(
            update(ApiKey).where(ApiKey.key_id == key_id).values(last_used_at=None)
        )
    for _ in range(3):
        assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    await bridge.rt.key_usage.write()
    assert await last_used(bridge, key_id) is None  # written a moment ago: not again
    recent = bridge.rt.key_usage.recent
    assert (recent.misses, recent.hits) == (1, 3)
    recent.invalidate()  # as if the minute had passed
    assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    await bridge.rt.key_usage.write()
    assert await last_used(bridge, key_id) is not None


async def test_key_uses_are_written_in_one_batch_off_the_request_path(tmp_path: Path) -> None:
    # No periodic write within the test: only the explicit ones and the shutdown's write.
    keys = master_keys()
    async with running_bridge(tmp_path, master_keys=keys, usage_flush_seconds=3600) as bridge:
        world = World(bridge)
        api_keys = [await world.demo(name) for name in ("shop", "blog", "wiki")]
        ids = [key.removeprefix("stk_").split(".", 1)[0] for key in api_keys]
        for name, key in zip(("shop", "blog", "wiki"), api_keys, strict=True):
            headers = {"Host": f"{name}.api.example.com", "X-Santokit-Api-Key": key}
            assert (await bridge.client.post("/call", json=STATS, headers=headers)).is_success
        assert [await last_used(bridge, key_id) for key_id in ids] == [None] * 3
        # A key deleted before the write does not cost the others theirs.
        await bridge.admin_json("DELETE", "/projects/blog", 204)
        await bridge.rt.key_usage.write()
        used = [await last_used(bridge, key_id) for key_id in ids]
        assert used[0] is not None and used[1] is None and used[2] is not None
        recent = bridge.rt.key_usage.recent
        recent.invalidate()
        wiki = {"Host": "wiki.api.example.com", "X-Santokit-Api-Key": api_keys[2]}
        assert (await bridge.client.post("/call", json=STATS, headers=wiki)).is_success
    # Recorded after the last write: written when the process stops.
    async with running_bridge(tmp_path, master_keys=keys) as again:
        assert (await last_used(again, ids[2])) > used[2]


async def test_failed_metering_writes_are_kept_for_the_next(pg_url: str, tmp_path: Path) -> None:
    """Usage counters and key uses both survive a registry that refused their write."""
    registry = TcpProxy("127.0.0.1", urlsplit(pg_url).port or 5432)
    port = await registry.accept()
    url = asyncpg_url(pg_url).replace(f":{urlsplit(pg_url).port or 5432}/", f":{port}/", 1)
    try:
        async with running_bridge(tmp_path, url, usage_flush_seconds=3600) as bridge:
            key = await World(bridge).demo("shop")
            key_id = key.removeprefix("stk_").split(".", 1)[0]
            headers = {**HOST, "X-Santokit-Api-Key": key}
            await bridge.rt.usage.flush()  # the set-up's own counts (logins, say) written
            for _ in range(2):
                assert (await bridge.client.post("/call", json=STATS, headers=headers)).is_success
            await registry.refuse()
            registry.cut()
            await bridge.rt.key_usage.write()  # fails: the use stays recorded
            await bridge.rt.usage.flush()  # fails: the counts stay
            assert (await bridge.client.post("/call", json=STATS, headers=headers)).is_success
            await registry.accept()
            await bridge.rt.key_usage.write()
            await bridge.rt.usage.flush()
            assert await last_used(bridge, key_id) is not None
            today = datetime.now(UTC).date()
            (day,) = await bridge.rt.usage.daily("shop", today, today, "prod")
            assert day["counters"]["requests.logics.2xx"] == 3
            assert day["counters"]["rows.read"] == 3  # one row per stats call
    finally:
        await registry.close()


def test_last_errors_are_kept_per_env_and_forgotten_per_env_or_project() -> None:
    errors = LastErrors()
    shop_prod, shop_dev, blog_prod = (
        Tenant("shop", "prod"),
        Tenant("shop", "dev"),
        Tenant("blog", "prod"),
    )
    for tenant in (shop_prod, shop_dev, blog_prod):
        errors.record(tenant, f"failed: {tenant.project}/{tenant.env}")
    errors.record(shop_prod, "failed again")
    assert errors.get(shop_prod) == "failed again"
    errors.forget("shop", "dev")
    assert errors.get(shop_dev) is None and errors.get(shop_prod) == "failed again"
    errors.forget("shop")
    assert errors.get(shop_prod) is None and errors.get(blog_prod) == "failed: blog/prod"


async def test_a_project_delete_however_it_arrives_retires_pools_and_drops_state(bridge) -> None:
    key = await World(bridge).demo("shop")
    headers = {**HOST, "X-Santokit-Api-Key": key}
    assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    rt = bridge.rt
    release = (await rt.releases.get_manifest("shop")).release("prod")
    assert rt.pools.stats("shop") and rt.directory.has_release("shop", release)
    assert rt.releases.bundles.peek(("shop", release)) is not None
    rt.last_errors.record(Tenant("shop", "prod"), "Tenant database unavailable")
    # What a peer's broadcast delivers, applied through the same bus as a local change.
    await rt.bus.publish("project.delete", "shop")
    assert rt.pools.stats("shop") == []
    assert not rt.directory.has_release("shop", release)
    assert rt.releases.bundles.peek(("shop", release)) is None
    assert rt.last_errors.get(Tenant("shop", "prod")) is None


async def test_a_limits_change_applies_in_place_and_a_disable_retires_pools(bridge) -> None:
    key = await World(bridge).demo("shop")
    headers = {**HOST, "X-Santokit-Api-Key": key}
    assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    rt = bridge.rt
    opened = rt.pools.connects

    async def patch(changes: dict) -> None:
        response = await bridge.client.patch(
            "/admin/v1/projects/shop", json=changes, headers=bridge.admin_headers
        )
        assert response.status_code == 200, response.text

    await patch({"limits": {"maxPoolSize": 3}})
    assert rt.pools.stats("shop")  # the pool stays, its connection too
    assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    assert [p["max_size"] for p in rt.pools.stats("shop")] == [3]
    assert rt.pools.connects == opened
    await patch({"status": "disabled"})
    assert rt.pools.stats("shop") == []


async def test_an_env_delete_retires_only_that_envs_pools(bridge) -> None:
    key = await World(bridge).demo("shop")
    headers = {**HOST, "X-Santokit-Api-Key": key}
    assert (await bridge.client.post("/call", json=STATS, headers=headers)).status_code == 200
    rt = bridge.rt
    rt.last_errors.record(Tenant("shop", "prod"), "Tenant database unavailable")
    await rt.bus.publish("env.delete", "shop", "dev")
    assert [p["env"] for p in rt.pools.stats("shop")] == ["prod"]
    assert rt.last_errors.get(Tenant("shop", "prod")) == "Tenant database unavailable"
    await rt.bus.publish("env.delete", "shop", "prod")
    assert rt.pools.stats("shop") == [] and rt.last_errors.get(Tenant("shop", "prod")) is None
