"""Usage metering per (project, env, day) (`docs/admin.md`, "Usage"): counted in memory, flushed
in batches, summed over replicas, nothing lost on SIGTERM."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.bridge import ADMIN_TOKEN, Bridge, running_bridge
from support.processes import free_port, master_keys, start, stk_env, stop, wait_ready
from support.world import World, demo_files, seeded_sqlite

TODAY = datetime.now(UTC).date().isoformat()


async def counters(b: Bridge, project: str, **params: str) -> dict[str, int]:
    answer = await b.admin_json("GET", f"/projects/{project}/usage", params=params)
    items = [i for i in answer["items"] if i["day"] == TODAY and i["env"] == "prod"]
    return dict(items[0]["counters"]) if items else {}


async def test_calls_logins_and_refusals_are_counted(bridge: Bridge) -> None:
    world = World(bridge, home="shop")
    await world.demo("shop")
    await world.demo("other")
    for _ in range(3):
        assert (await world.call("logics/public/stats", project="shop")).status_code == 200
    rows = await world.call("db/notes/select", {"select": ["title"]}, project="shop", key="shop")
    assert rows.status_code == 200
    read = len(rows.json()["data"])
    category = {"data": {"name": "metered"}}
    made = await world.call("db/categories/insert", category, project="shop", key="shop")
    assert made.status_code == 200, made.text
    assert (await world.call("logics/nope", project="shop")).status_code == 404
    await world.session("shop")
    # Refused before a tenant is resolved: nobody's usage (anyone could send these).
    bad_key = {"X-Santokit-Api-Key": "stk_" + "0" * 16 + "." + "A" * 43}
    refused = await world.call("logics/public/stats", project="shop", headers=bad_key)
    assert refused.status_code == 401

    counted = await counters(bridge, "shop")
    assert counted["requests.logics.2xx"] == 3
    assert counted["requests.logics.4xx"] == 1
    assert counted["requests.db.2xx"] == 2
    assert counted["requests.auth.2xx"] == 2  # signup and login
    assert counted["logins"] == 1
    assert counted["rows.read"] == 3 + read  # one row per stats call, then the select
    assert counted["rows.written"] == 1
    assert counted["bytes.in"] > 0 and counted["bytes.out"] > 0
    assert counted["db.ms"] >= 0
    assert "requests.logics.4xx" not in await counters(bridge, "other")  # its own, untouched

    await world.call("logics/public/stats", project="shop")
    assert (await counters(bridge, "shop"))["requests.logics.2xx"] == 4  # added, not replaced


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "yesterday"}, 400),
        ({"to": "2026-13-01"}, 400),
        ({"from": "2026-02-01", "to": "2026-01-01"}, 400),
        ({"from": "2020-01-01", "to": "2026-01-01"}, 400),
        ({"env": "nope"}, 404),
    ],
)
async def test_bad_ranges_are_refused(bridge: Bridge, params: dict[str, str], status: int) -> None:
    await bridge.admin_json("POST", "/projects", 201, json={"id": "shop"})
    await bridge.admin("GET", "/projects/shop/usage", status, params=params)
    await bridge.admin("GET", "/projects/nope/usage", 404)


async def test_ranges_and_envs_filter(bridge: Bridge) -> None:
    world = World(bridge, home="shop")
    await world.demo("shop")
    await world.call("logics/public/stats", project="shop")
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    before: Any = await bridge.admin_json(
        "GET", "/projects/shop/usage", params={"from": yesterday, "to": yesterday}
    )
    assert before["items"] == [] and before["from"] == before["to"] == yesterday
    assert await counters(bridge, "shop", env="prod")


async def test_replicas_add_up_in_the_registry(pg_url: str, tmp_path: Path) -> None:
    from support.services import asyncpg_url

    keys = master_keys()
    registry = asyncpg_url(pg_url)
    kv = f"file://{tmp_path}/kv"
    async with (
        running_bridge(tmp_path, registry, kv, master_keys=keys) as one,
        running_bridge(tmp_path, registry, kv, master_keys=keys) as two,
    ):
        world = World(one, home="shop")
        await world.project("shop")
        url = seeded_sqlite(tmp_path / "shop.db")
        files = {"files": demo_files()}
        await one.admin_json("PUT", "/projects/shop/envs/prod/connections/main", json={"url": url})
        await one.admin_json("POST", "/projects/shop/envs/prod/releases", 201, json=files)
        other = World(two, home="shop")
        for w, n in ((world, 2), (other, 3)):
            for _ in range(n):
                await w.call("logics/public/stats", project="shop")
        await two.rt.usage.flush()
        assert (await counters(one, "shop"))["requests.logics.2xx"] == 5


@pytest.mark.slow
def test_sigterm_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = stk_env(
        data_dir=str(data),
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        tenant_data_dir=str(tmp_path),
    )
    env["STK_USAGE_FLUSH_SECONDS"] = "3600"  # only the shutdown flush can save the counts
    server = start(["serve"], env, tmp_path, free_port())
    try:
        wait_ready(server, timeout=120)
        assert server.admin("POST", "/projects", json={"id": "shop"}).status_code == 201
        url = {"url": seeded_sqlite(tmp_path / "shop.db")}
        assert server.admin("PUT", "/projects/shop/envs/prod/connections/main", json=url).is_success
        published = server.admin(
            "POST", "/projects/shop/envs/prod/releases", json={"files": demo_files()}
        )
        assert published.status_code == 201, published.text
        for _ in range(7):
            answer = httpx.post(
                f"{server.base}/call",
                json={"path": "logics/public/stats"},
                headers={"Host": "shop.localhost", "X-Santokit-Project": "shop"},
            )
            assert answer.status_code == 200, answer.text
    finally:
        assert stop(server, signal.SIGTERM) in (0, -signal.SIGTERM)
    again = start(["serve"], env, tmp_path, free_port())
    try:
        wait_ready(again, timeout=120)
        answer = again.admin("GET", "/projects/shop/usage").json()
        (today,) = [i for i in answer["items"] if i["day"] == TODAY]
        assert today["counters"]["requests.logics.2xx"] == 7
    finally:
        stop(again)
