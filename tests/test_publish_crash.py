"""kill -9 during publish (issue 8, `tenancy/outbox.py`): a replica publishing in a loop is
killed at a random moment and restarted. Whatever moment it was, every release that went live is
audited, and the other replica — which had the previous release cached for 30 s — serves the
current one soon after the restart, because the outbox announces what the killed process did
not."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.bridge import ADMIN_TOKEN
from support.processes import Server, free_port, master_keys, poll, start, stk_env, stop, wait_ready
from support.services import asyncpg_url
from support.world import demo_files, empty_sqlite

pytestmark = pytest.mark.slow  # real stk-bridge processes, one killed

HOST = {"Host": "shop.api.localhost"}
ROUNDS = 2


def call(server: Server, path: str) -> httpx.Response:
    return httpx.post(f"{server.base}/call", json={"path": path}, headers=HOST, timeout=10)


def publish(server: Server, i: int) -> httpx.Response:
    files = demo_files(**{f"c{i}": f"SELECT {i} AS n"})
    return server.admin("POST", "/projects/shop/envs/prod/releases", json={"files": files})


def logic_number(server: Server) -> int:
    """The `i` of the current release's logic `c<i>`."""
    compiled = server.admin("GET", "/projects/shop/envs/prod/releases/current").json()["compiled"]
    (name,) = [n for n in compiled["logics"] if n.startswith("c") and n[1:].isdigit()]
    return int(name[1:])


def audited(server: Server) -> set[str]:
    items: list[dict[str, Any]] = server.admin(
        "GET", "/audit", params={"project": "shop", "limit": 500}
    ).json()["items"]
    moves = ("release.publish", "release.rollback", "release.promote")
    return {item["detail"]["release"] for item in items if item["action"] in moves}


def test_a_replica_killed_while_publishing_leaves_no_live_release_unaudited_or_unannounced(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = stk_env(
        registry_url=asyncpg_url(pg_url),
        kv_url=redis_url,
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        host_suffix="api.localhost",
        data_dir=str(tmp_path / "unused"),
        tenant_data_dir=str(tmp_path),
    )
    one, two = (start(["serve"], env, tmp_path, free_port()) for _ in range(2))
    try:
        for server in (one, two):
            wait_ready(server)
        assert one.admin("POST", "/projects", json={"id": "shop"}).status_code == 201
        url = empty_sqlite(tmp_path / "shop.db")
        connect = one.admin("PUT", "/projects/shop/envs/prod/connections/main", json={"url": url})
        assert connect.status_code == 200, connect.text
        counter = iter(range(10_000))
        for _ in range(ROUNDS):
            stopping = threading.Event()

            def loop(server: Server = one, stopping: threading.Event = stopping) -> None:
                # Publish without pause; after each answer replica two caches the new release.
                while not stopping.is_set():
                    i = next(counter)
                    try:
                        if publish(server, i).status_code == 201:
                            call(two, f"logics/c{i}")
                    except httpx.HTTPError:
                        return  # killed

            publisher = threading.Thread(target=loop)
            publisher.start()
            time.sleep(random.uniform(0.5, 1.5))
            stop(one, signal.SIGKILL)
            stopping.set()
            publisher.join(15)
            one = start(["serve"], env, tmp_path, free_port())
            wait_ready(one)
            history = one.admin("GET", "/projects/shop/envs/prod/releases", params={"limit": 100})
            live = {item["release"] for item in history.json()["items"]}
            # Every release that ever went live is audited (the restart drained the outbox).
            poll(lambda live=live, server=one: live <= audited(server), 15)
            # ...and announced: replica two serves the current release.
            current = logic_number(one)
            poll(lambda current=current: call(two, f"logics/c{current}").status_code == 200, 5)
    finally:
        for server in (one, two):
            stop(server)
