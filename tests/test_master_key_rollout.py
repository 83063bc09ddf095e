"""A master-key rollout as README documents it ("Master-key rotation"), on two real replicas
restarted one by one, with traffic on whichever replicas are up and new projects created on
each (their data keys wrapped by that replica's primary) at every step: no request fails.
Before `STK_MASTER_KEY_PRIMARY`, the first replica restarted with the new key wrapped new data
keys under it, and the other could not unwrap them (503)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import httpx
import pytest

from tenancy.keyring import Keyring

from support.bridge import ADMIN_TOKEN
from support.processes import Server, free_port, start, stk_env, stop, wait_ready
from support.services import asyncpg_url
from support.world import demo_files, empty_sqlite

pytestmark = pytest.mark.slow  # real stk-bridge processes

FILES = demo_files(one="SELECT 1 AS n")


class Fleet:
    """Two replicas behind a (simulated) load balancer: traffic only to the ones up."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.up: list[Server] = []
        self.projects: list[str] = []
        self.failures: list[str] = []
        self.calls = 0
        self.lock = threading.Condition()
        self.in_flight: dict[int, int] = {}  # port → requests under way
        self.names = (f"tenant{i}" for i in itertools.count())

    def start(self, env: dict[str, str]) -> Server:
        server = start(["serve"], env, self.tmp_path, free_port())
        try:
            wait_ready(server, timeout=90)  # six restarts on a shared, busy machine
        except BaseException:
            stop(server)  # never left running when it did not come up
            raise
        with self.lock:
            self.up.append(server)
        return server

    def restart(self, server: Server, **changes: str) -> Server:
        """Out of the balancer, drained (no request in flight), restarted with `changes`, in."""
        with self.lock:
            self.up.remove(server)
            self.lock.wait_for(lambda: not self.in_flight.get(server.port))
        stop(server)
        return self.start(self.env | {f"STK_{k.upper()}": v for k, v in changes.items()})

    def traffic(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            with self.lock:
                targets = list(itertools.product(self.up, self.projects))
            for server, project in targets:
                self.call(server, project)

    def call(self, server: Server, project: str) -> None:
        with self.lock:
            if server not in self.up:
                return  # taken out of the balancer meanwhile
            self.in_flight[server.port] = self.in_flight.get(server.port, 0) + 1
        try:
            headers = {"Host": f"{project}.api.localhost"}
            body = {"path": "logics/one"}
            answer = httpx.post(f"{server.base}/call", json=body, headers=headers, timeout=10)
        finally:
            with self.lock:
                self.in_flight[server.port] -= 1
                self.lock.notify_all()
        self.calls += 1
        if answer.status_code != 200:
            self.failures.append(f"{project} on :{server.port}: {answer.text}")

    def new_project(self, server: Server) -> None:
        """A new project registered through `server`: its data key wrapped by that replica's
        primary, then served by every replica (the traffic)."""
        name = next(self.names)
        assert server.admin("POST", "/projects", json={"id": name}).status_code == 201
        url = {"url": empty_sqlite(self.tmp_path / f"{name}.db")}
        put = server.admin("PUT", f"/projects/{name}/envs/prod/connections/main", json=url)
        assert put.status_code == 200, put.text
        path = f"/projects/{name}/envs/prod/releases"
        assert server.admin("POST", path, json={"files": FILES}).status_code == 201
        with self.lock:
            self.projects.append(name)


def test_a_master_key_rollout_as_documented_fails_no_request(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    old, new = Keyring.generate_entry("old"), Keyring.generate_entry("new")
    env = stk_env(
        registry_url=asyncpg_url(pg_url),
        kv_url=redis_url,
        master_keys=old,
        admin_tokens=ADMIN_TOKEN,
        host_suffix="api.localhost",
        cache_ttl_seconds="0.2",  # connections are decrypted (data keys unwrapped) all along
        data_dir=str(tmp_path / "unused"),
        tenant_data_dir=str(tmp_path),
    )
    fleet = Fleet(env, tmp_path)
    stopping = threading.Event()
    driver = threading.Thread(target=fleet.traffic, args=(stopping,))
    one = fleet.start(env)
    two = fleet.start(env)
    try:
        fleet.new_project(one)
        driver.start()
        # 1. The new key is added everywhere, after the old one: the old one stays primary.
        for server in (one, two):
            replaced = fleet.restart(server, master_keys=f"{old},{new}")
            one, two = (replaced, two) if server is one else (one, replaced)
        fleet.new_project(two)
        # 2. Every replica knows it: it becomes the primary, replica by replica. A project made
        # on the switched replica is wrapped under `new` while the other still wraps under `old`.
        for server in (one, two):
            replaced = fleet.restart(server, master_keys=f"{old},{new}", master_key_primary="new")
            one, two = (replaced, two) if server is one else (one, replaced)
            fleet.new_project(replaced)
        # Exactly the two projects made on switched replicas are wrapped under `new`.
        assert one.admin("GET", "/keys/status").json()["byKid"]["new"] == 2
        # 3. Every data key re-wrapped under the primary; then the old key leaves.
        assert one.admin("POST", "/keys/rewrap").status_code == 200
        status = one.admin("GET", "/keys/status").json()
        assert status["activeKid"] == "new" and not status["byKid"].get("old"), status
        for server in (one, two):
            replaced = fleet.restart(server, master_keys=new, master_key_primary="")
            one, two = (replaced, two) if server is one else (one, replaced)
        fleet.new_project(one)
    finally:
        stopping.set()
        if driver.is_alive():
            driver.join(30)
        for server in list(fleet.up):
            stop(server)
    assert fleet.failures == [], fleet.failures[:5]
    assert fleet.calls > 50 and len(fleet.projects) == 5
