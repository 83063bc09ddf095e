"""Two real `stk-bridge serve` replicas sharing PostgreSQL and Redis (`docs/tenancy.md`
invalidation).

An admin change made through replica 1 must be what replica 2 serves within 1 second, although
replica 2 has the old state cached (TTL 30 s): only the invalidation channel can make that true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.bridge import ADMIN_TOKEN
from support.processes import (
    Server,
    free_port,
    master_keys,
    poll,
    start,
    stk_env,
    stop,
    wait_ready,
)
from support.services import asyncpg_url, pg_database
from support.world import demo_files, seed_postgresql

pytestmark = pytest.mark.slow  # real stk-bridge processes

PROJECT = "shop"
HOST = {"Host": f"{PROJECT}.api.localhost"}
PROPAGATION_S = 1.0


@pytest.fixture
async def tenant_db() -> AsyncIterator[str]:
    """The tenant's own PostgreSQL database, seeded with the demo rows."""
    async with pg_database() as url:
        yield await seed_postgresql(url)


@pytest.fixture
def replicas(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    env = stk_env(
        registry_url=asyncpg_url(pg_url),
        kv_url=redis_url,
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        host_suffix="api.localhost",
        data_dir=str(tmp_path / "unused"),
        tenant_data_dir=str(tmp_path),
    )
    # Both at once, as compose starts them: they upgrade the fresh registry concurrently.
    servers = [start(["serve"], env, tmp_path, free_port()) for _ in range(2)]
    try:
        for server in servers:
            wait_ready(server)
        yield servers[0], servers[1]
    finally:
        for server in servers:
            stop(server)


def call(server: Server, path: str, key: str | None = None, **params: Any) -> httpx.Response:
    headers = dict(HOST) | ({"X-Santokit-Api-Key": key} if key else {})
    body = {"path": path, "params": params}
    return httpx.post(f"{server.base}/call", json=body, headers=headers, timeout=10)


def register(server: Server, tenant_url: str) -> str:
    """Project + connection + API key + the demo release; answers the API key."""
    assert (
        server.admin("POST", "/projects", json={"id": PROJECT, "envs": ["prod"]}).status_code == 201
    )
    put = server.admin("PUT", "/projects/shop/envs/prod/connections/main", json={"url": tenant_url})
    assert put.status_code == 200, put.text
    key = server.admin(
        "POST", "/projects/shop/envs/prod/api-keys", json={"name": "ci", "roles": ["admin"]}
    )
    assert key.status_code == 201, key.text
    published = server.admin(
        "POST", "/projects/shop/envs/prod/releases", json={"files": demo_files()}
    )
    assert published.status_code == 201, published.text
    api_key: str = key.json()["apiKey"]
    return api_key


def test_admin_changes_on_one_replica_reach_the_other_within_a_second(
    replicas: tuple[Server, Server], tenant_db: str
) -> None:
    one, two = replicas
    api_key = register(one, tenant_db)

    # Replica 2 serves the tenant registered on replica 1 (and now has it cached).
    stats = call(two, "logics/public/stats")
    assert stats.status_code == 200, stats.text
    assert stats.json() == {"data": [{"notebooks": 3, "notes": 4, "categories": 3}]}
    owned = call(two, "logics/notebooks/summary", api_key, owner_id="seed-alice")
    assert owned.status_code == 200, owned.text
    assert [row["title"] for row in owned.json()["data"]] == ["Projects", "Reading list"]
    assert call(two, "logics/version").status_code == 404

    # A new release published on 1 is served by 2 within a second.
    files = demo_files(version="SELECT 'v2' AS version")
    assert (
        one.admin("POST", "/projects/shop/envs/prod/releases", json={"files": files}).status_code
        == 201
    )
    answer, took = poll(lambda: (r := call(two, "logics/version")).status_code == 200 and r, 3)
    assert answer.json() == {"data": [{"version": "v2"}]}
    assert took < PROPAGATION_S, f"release reached replica 2 after {took:.2f}s"

    # A key revoked on 1 is refused by 2 within a second.
    key_id = api_key.removeprefix("stk_").split(".")[0]
    assert call(two, "logics/public/stats", api_key).status_code == 200
    assert one.admin("DELETE", f"/projects/shop/envs/prod/api-keys/{key_id}").status_code == 204
    refused, took = poll(lambda: (r := call(two, "logics/public/stats", api_key)).is_error and r, 3)
    assert refused.status_code == 401
    assert took < PROPAGATION_S, f"revocation reached replica 2 after {took:.2f}s"

    # A project deleted on 1 is unknown to 2 within a second.
    assert call(two, "logics/public/stats").status_code == 200
    assert one.admin("DELETE", "/projects/shop").status_code == 204
    gone, took = poll(lambda: (r := call(two, "logics/public/stats")).is_error and r, 3)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "NOT_FOUND"
    assert took < PROPAGATION_S, f"deletion reached replica 2 after {took:.2f}s"


def test_concurrent_publishes_across_replicas_lose_nothing(
    replicas: tuple[Server, Server], tenant_db: str
) -> None:
    one, two = replicas
    register(one, tenant_db)
    for server in replicas:  # both cache the first release
        assert call(server, "logics/public/stats").status_code == 200

    def publish(i: int) -> tuple[int, httpx.Response]:
        files = demo_files(**{f"c{i}": f"SELECT {i} AS n"})
        return i, replicas[i % 2].admin(
            "POST", "/projects/shop/envs/prod/releases", json={"files": files}
        )

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(publish, range(20)))
    published = {r.json()["release"]: i for i, r in results if r.status_code == 201}
    assert all(r.status_code in (201, 409) for _, r in results), [r.text for _, r in results]
    assert len(published) >= 1

    history = one.admin("GET", "/projects/shop/envs/prod/releases", params={"limit": 100}).json()[
        "items"
    ]
    # Every publish that answered 201 is in the history (compare-and-set lost none of them).
    assert set(published) <= {item["release"] for item in history}
    current = [item["release"] for item in history if item["current"]]
    assert current == [history[0]["release"]]
    latest = published[current[0]]

    # Both replicas converge on the current release.
    for server in (one, two):
        poll(lambda s=server: call(s, f"logics/c{latest}").status_code == 200, PROPAGATION_S)
        others = [i for i in published.values() if i != latest]
        if others:
            assert call(server, f"logics/c{others[0]}").status_code == 404
