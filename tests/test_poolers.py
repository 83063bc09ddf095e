"""Tenant databases behind a real PgBouncer, in session and transaction modes (`docs/poolers.md`).

The pooler's server pool (`support.poolers.POOL_SIZE`) is smaller than what the Bridge runs at
once, so statements of different Bridge connections share server connections: named prepared
statements, startup parameters and session state would all show.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tenancy.engines import Connection, Pooler, connector, verify_url
from tenancy.errors import BadRequest, ServiceUnavailable, Timeout

from support.bridge import ADMIN_TOKEN, running_bridge
from support.poolers import POOL_SIZE, StartPooler
from support.processes import Server, free_port, master_keys, start, stk_env, stop, wait_ready
from support.services import asyncpg_url, pg_database
from support.world import World, demo_files, host, seed_postgresql

pytestmark = pytest.mark.slow  # a PgBouncer process per test, and stk-bridge processes

PROJECT = "pool"
BASE = f"/projects/{PROJECT}/envs/prod"
SLOW_LOGIC = (
    "---\nauth: public\nparams:\n  s: {type: float}\n---\nSELECT pg_sleep(:s) IS NULL AS slept"
)
FILES = {**demo_files(), "logics/slow.sql": SLOW_LOGIC}
CONCURRENCY = 24  # requests in flight at once, against a pooler with POOL_SIZE server connections


async def backend_pid(conn: Connection) -> int:
    result = await conn.run("SELECT pg_backend_pid() AS pid", ())
    assert result.rows is not None
    return int(result.rows[0]["pid"])


@asynccontextmanager
async def pinned(url: str, pid: int) -> AsyncIterator[None]:
    """Hold the pooler's server connection `pid` in an open transaction (so nobody else gets
    it), by opening client transactions until one lands on it; the others are let go."""
    held: list[asyncpg.Connection] = []
    try:
        for _ in range(POOL_SIZE):
            client = await asyncpg.connect(url, statement_cache_size=0)
            held.append(client)
            await client.execute("BEGIN")
            if await client.fetchval("SELECT pg_backend_pid()") == pid:
                break
        else:
            raise AssertionError(f"server connection {pid} not reached")
        for other in held[:-1]:
            await other.close()
        yield
    finally:
        for client in held:
            await client.close()


# --- the driver behind the pooler -------------------------------------------------------------


async def test_a_pooler_refusing_a_direct_connection_is_named(
    pgbouncer: StartPooler, pg_url: str
) -> None:
    """Direct connections send the statement timeout as a startup parameter, which PgBouncer
    refuses: at registration and at runtime the reason says what to declare."""
    url = pgbouncer("transaction").url(pg_url)
    reason = (
        "server refused a startup parameter (SQLSTATE 08P01), as connection poolers do; "
        'register the connection with "pooler": "transaction" (or "session", the pooler\'s mode)'
    )
    with pytest.raises(BadRequest) as check:
        await verify_url(url, timeout_s=3)
    assert check.value.message == f"Connection check failed: {reason}"
    with pytest.raises(ServiceUnavailable) as runtime:
        await connector(url, 1000, 3)()
    assert runtime.value.message == f"Tenant database unavailable: {reason}"
    for pooler in ("session", "transaction"):
        assert await verify_url(url, 3, pooler) == "postgresql"


@pytest.mark.parametrize("declared", ["session", "transaction"])
async def test_transaction_mode_keeps_no_statement_between_transactions(
    pgbouncer: StartPooler, pg_url: str, declared: Pooler
) -> None:
    """A statement prepared in one transaction and run again when its server connection is
    busy: a named one is gone (a clear 503 naming the mode), an unnamed one just runs."""
    url = pgbouncer("transaction").url(pg_url)
    conn = await connector(url, 5000, 3, declared)()
    try:
        pid = await backend_pid(conn)  # prepared (and, if named, kept) on server `pid`
        async with pinned(url, pid):
            if declared == "transaction":
                assert await backend_pid(conn) != pid
                return
            with pytest.raises(ServiceUnavailable) as caught:
                await backend_pid(conn)
        assert caught.value.message == (
            "Tenant database unavailable: a prepared statement did not survive to the next "
            "transaction, as behind a pooler in transaction mode; register the connection with "
            '"pooler": "transaction"'
        )
        assert conn.broken
    finally:
        await conn.close()


async def test_transaction_mode_leaves_no_session_state_on_the_server(
    pgbouncer: StartPooler, pg_url: str
) -> None:
    """One server connection for every client: what a statement set, or the statement timeout
    set for it, must not reach the next client."""
    url = pgbouncer("transaction", pool_size=1).url(pg_url)
    conn = await connector(url, 250, 3, "transaction")()
    try:
        result = await conn.run("SELECT current_setting('statement_timeout') AS t", ())
        assert result.rows == [{"t": "250ms"}]
        with pytest.raises(Timeout):
            await conn.run("SELECT pg_sleep(2)", ())
        assert not conn.broken  # rolled back: the connection serves on
        await conn.run("SET search_path = nowhere", ())
        assert conn.broken  # never reused, as on a direct connection
    finally:
        await conn.close()
    other = await asyncpg.connect(url, statement_cache_size=0)
    try:
        assert await other.fetchval("SHOW statement_timeout") == "0"
        assert await other.fetchval("SHOW search_path") == '"$user", public'
        assert not await other.fetchval("SELECT pg_is_in_recovery()")
    finally:
        await other.close()


# --- a tenant behind the pooler, through the HTTP API ------------------------------------------


@pytest.mark.parametrize("mode", ["session", "transaction"])
async def test_a_tenant_behind_a_pooler_serves_every_kind_of_call(
    pgbouncer: StartPooler, pg_url: str, tmp_path: Path, mode: Pooler
) -> None:
    url = pgbouncer(mode).url(pg_url)
    async with running_bridge(tmp_path, pool_max_per_tenant=8) as bridge:
        w = World(bridge, home=PROJECT)
        # Session mode: the Bridge's connections each hold a server connection, so its pool
        # must fit the pooler's (docs/poolers.md); requests still outnumber both.
        limits = {"maxPoolSize": POOL_SIZE} if mode == "session" else {}
        await w.project(PROJECT)
        await w.admin("PATCH", f"/projects/{PROJECT}", 200, json={"limits": limits})

        # Registered as a direct connection, the pooler's refusal says what to declare.
        r = await w.admin("PUT", f"{BASE}/connections/main", 400, json={"url": url})
        assert '"pooler": "transaction"' in r.json()["error"]["message"]
        body = {"url": url, "pooler": mode}
        assert (await w.admin("PUT", f"{BASE}/connections/main", 200, json=body)).json()[
            "pooler"
        ] == mode

        # Schema apply through the pooler: one transaction, under an advisory lock.
        release = {"files": FILES, "applySchema": True}
        ddl = (await w.admin("POST", f"{BASE}/releases", 201, json=release)).json()["ddl"]
        assert any(statement.startswith('CREATE TABLE "notes"') for statement in ddl)
        again = (await w.admin("POST", f"{BASE}/releases", 201, json=release)).json()
        assert again["ddl"] == []
        for name in ("alice", "bob"):
            await w.api_key(PROJECT, "prod", name)

        async def ok(who: str | None, path: str, params: Any = None) -> Any:
            r = await w.call(path, params, project=PROJECT, key=who)
            assert r.status_code == 200, (path, r.text)
            return r.json()["data"]

        # CRUD writes and reads under row filters.
        notebooks = {}
        for who in ("alice", "bob"):
            data = {"owner_id": w.key_ids[who], "title": f"{who}'s"}
            notebooks[who] = (await ok(who, "db/notebooks/insert", {"data": data}))["id"]
        assert [n["title"] for n in await ok("alice", "db/notebooks/select")] == ["alice's"]
        for i in range(3):
            note = {"notebook_id": notebooks["alice"], "owner_id": w.key_ids["alice"]}
            await ok("alice", "db/notes/insert", {"data": {**note, "title": f"n{i}"}})
        where = {"where": {"id": notebooks["alice"]}}
        await ok("alice", "db/notebooks/update", {**where, "data": {"title": "mine"}})
        assert await ok("bob", "db/notebooks/update", {**where, "data": {"title": "x"}}) == {
            "affected": 0
        }

        # Logics with parameters, reads and writes.
        mine = await ok("alice", "logics/notes/mine", {"limit": 2})
        assert len(mine) == 2 and {n["notebook_id"] for n in mine} == {notebooks["alice"]}
        pin = {"note_id": mine[0]["id"], "pinned": True}
        assert await ok("alice", "logics/notes/pin", pin) == {"affected": 1}
        assert await ok("bob", "logics/notes/mine") == []

        # Many more requests at once than the pooler has server connections.
        calls = [
            w.call(*call, project=PROJECT, key="alice")
            for _ in range(CONCURRENCY // 3)
            for call in (
                ("logics/notes/mine", {"limit": 5}),
                ("db/notes/select", {"where": {"pinned": True}}),
                ("logics/public/stats", None),
            )
        ]
        answers = await asyncio.gather(*calls)
        assert Counter(r.status_code for r in answers) == {200: len(calls)}
        assert answers[2].json()["data"] == [{"notebooks": 2, "notes": 3, "categories": 0}]

        # The project's statement timeout holds behind the pooler, and nothing of it lingers.
        await w.admin(
            "PATCH",
            f"/projects/{PROJECT}",
            200,
            json={"limits": {**limits, "statementTimeoutMs": 300}},
        )
        r = await w.call("logics/slow", {"s": 2}, project=PROJECT)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["message"] == "Statement exceeded the 300 ms timeout"
        assert await ok(None, "logics/slow", {"s": 0.01}) == [{"slept": False}]
        await ok("alice", "db/notes/delete", {"where": {"id": mine[1]["id"]}})
        assert len(await ok("alice", "logics/notes/mine")) == 2


# --- two Bridge processes sharing the pooler -----------------------------------------------------


@pytest.fixture
def replicas(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    """Two `stk-bridge serve` sharing the registry and KV; a tenant's breaker reopens fast."""
    env = stk_env(
        registry_url=asyncpg_url(pg_url),
        kv_url=redis_url,
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        host_suffix="api.example.com",
        data_dir=str(tmp_path / "unused"),
        pool_max_per_tenant="6",
        tenant_breaker_open_seconds="0.5",
    )
    servers = [start(["serve"], env, tmp_path, free_port()) for _ in range(2)]
    try:
        for server in servers:
            wait_ready(server)
        yield servers
    finally:
        for server in servers:
            stop(server)


async def load(
    servers: list[Server], key: str, until: float, statuses: list[tuple[float, int]]
) -> None:
    """CONCURRENCY workers, half on each Bridge, calling a logic with parameters and a CRUD
    select in turn until `until` (monotonic); every answer's (time, status) is recorded."""

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        while time.monotonic() < until:
            if n % 2:
                body: dict[str, Any] = {
                    "path": "logics/notebooks/summary",
                    "params": {"owner_id": "seed-alice"},
                }
            else:
                body = {"path": "db/categories/select", "params": {"orderBy": {"id": "asc"}}}
            headers = {**host(PROJECT), "X-Santokit-Api-Key": key}
            r = await client.post("/call", json=body, headers=headers)
            statuses.append((time.monotonic(), r.status_code))
            if r.status_code not in (200, 503):
                raise AssertionError(r.text)

    clients = [httpx.AsyncClient(base_url=s.base, timeout=15) for s in servers]
    try:
        await asyncio.gather(*(worker(clients[n % 2], n) for n in range(CONCURRENCY)))
    finally:
        for client in clients:
            await client.aclose()


async def test_two_bridges_share_a_transaction_pooler_and_ride_out_its_restart(
    pgbouncer: StartPooler, replicas: list[Server]
) -> None:
    pooler = pgbouncer("transaction")
    async with pg_database() as tenant:
        await seed_postgresql(tenant)
        one = replicas[0]
        assert one.admin("POST", "/projects", json={"id": PROJECT}).status_code == 201
        body = {"url": pooler.url(tenant), "pooler": "transaction"}
        assert one.admin("PUT", f"{BASE}/connections/main", json=body).status_code == 200
        assert one.admin("POST", f"{BASE}/releases", json={"files": FILES}).status_code == 201
        made = one.admin("POST", f"{BASE}/api-keys", json={"name": "load", "roles": ["admin"]})
        key = made.json()["apiKey"]

        # Under load from both Bridges: every answer is a 200.
        statuses: list[tuple[float, int]] = []
        await load(replicas, key, time.monotonic() + 3, statuses)
        assert len(statuses) > CONCURRENCY and Counter(s for _, s in statuses) == {
            200: len(statuses)
        }

        # The pooler restarts mid-traffic: 503s at most while it is down, then 200s again.
        statuses.clear()
        began = time.monotonic()
        traffic = asyncio.create_task(load(replicas, key, began + 6, statuses))
        await asyncio.sleep(1)
        await asyncio.to_thread(pooler.stop)
        down = time.monotonic()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(pooler.start)
        up = time.monotonic()
        await traffic
        failed = [t for t, status in statuses if status != 200]
        assert failed and {s for _, s in statuses} == {200, 503}
        assert all(down - 0.1 <= t for t in failed)
        recovered = [t for t, status in statuses if t > up + 2]
        assert recovered and all(status == 200 for t, status in statuses if t > up + 2)
