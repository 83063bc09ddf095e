"""The fair connection budget, per-tenant waiting, the tenant breaker and failover, on real
PostgreSQL and SQLite (`docs/tenancy.md`, "Connection pools"). Timing bounds are generous: the
figures belong in benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tenancy.engines.postgresql import PgConnection
from tenancy.errors import ServiceUnavailable, Timeout
from tenancy.pools import PoolKey, PoolManager

from support.bridge import running_bridge
from support.faults import Mode, TcpProxy
from support.pools import SLEEP_PG, MakeManager, backends, eventually, sqlite_db


def key(name: str) -> PoolKey:
    return PoolKey(name, "dev", "main", 1)


async def outcome(call: Awaitable[Any]) -> bool:
    try:
        await call
    except ServiceUnavailable:
        return False
    return True


async def proxy_for(pg_url: str, mode: Mode = "pass") -> TcpProxy:
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432, mode)
    await proxy.accept()
    return proxy


def through(pg_url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(pg_url)
    return parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()


async def eventually_async(
    read: Callable[[], Awaitable[int]], check: Callable[[int], bool], seconds: float = 3
) -> None:
    """`eventually` for a value read with I/O."""
    deadline = time.monotonic() + seconds
    while not check(await read()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    started: list[TcpProxy] = []
    yield started
    for proxy in started:
        await proxy.close()


# --- the budget -------------------------------------------------------------------------------


async def test_the_budget_counts_open_connections_not_pool_sizes(
    tmp_path: Path, make_manager: MakeManager
) -> None:
    # Reserving max_size per pool, a budget of 4 would fit one pool of 4 and evict per request.
    manager = make_manager(max_per_tenant=5, max_total=4)
    urls = {name: sqlite_db(tmp_path, f"{name}.db") for name in ("aa", "bb", "cc", "dd")}
    for _ in range(3):
        for name, url in urls.items():
            await manager.query(key(name), url, "SELECT 1", [])
    assert manager.open_pools == 4 and manager.open_connections == 4
    assert manager.connects == 4


async def test_many_tenants_shrink_to_one_connection_rather_than_reconnect(
    tmp_path: Path, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=5, max_total=300)
    await serve_300_tenants_without_reconnecting(tmp_path, manager)


async def test_the_default_settings_serve_300_active_tenants_without_reconnecting(
    tmp_path: Path,
) -> None:
    """The pool manager a Bridge builds from its defaults (`docs/tenancy.md`, connection budget
    arithmetic): 300 active tenants each keep a connection."""
    async with running_bridge(tmp_path) as bridge:
        await serve_300_tenants_without_reconnecting(tmp_path, bridge.rt.pools)


async def serve_300_tenants_without_reconnecting(tmp_path: Path, manager: PoolManager) -> None:
    tenants = 300
    urls = [sqlite_db(tmp_path, f"t{n}.db") for n in range(tenants)]
    peak = 0

    async def tenant(n: int) -> None:
        nonlocal peak
        # Two at once, so every tenant would like two connections.
        await asyncio.gather(*(manager.query(key(f"t{n}"), urls[n], "SELECT 1", []) for _ in "ab"))
        peak = max(peak, manager.open_connections)

    async def round_() -> None:
        for start in range(0, tenants, 50):
            await asyncio.gather(*(tenant(n) for n in range(start, start + 50)))

    await round_()
    await round_()
    warm = manager.connects
    for _ in range(3):
        await round_()
    assert manager.connects - warm <= 5  # no reconnect per request (thrashing: ~1,800)
    assert peak <= manager.max_total and manager.open_connections <= manager.max_total
    assert manager.open_pools == tenants


async def test_quiet_tenants_keep_their_share_while_five_tenants_flood_slow_queries(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=5, max_total=10, timeout_ms=2000)
    stop = time.monotonic() + 3
    peak = 0

    async def flood(name: str) -> list[bool]:
        results = []
        while time.monotonic() < stop:
            results.append(await outcome(manager.query(key(name), pg_url, SLEEP_PG, [0.25])))
        return results

    async def quiet(name: str) -> list[bool]:
        nonlocal peak
        results = []
        while time.monotonic() < stop:
            results.append(await outcome(manager.query(key(name), pg_url, "SELECT 1", [])))
            peak = max(peak, manager.open_connections)
            await asyncio.sleep(0.02)
        return results

    floods = [flood(f"flood{n}") for n in range(5) for _ in range(5)]
    quiets = [quiet(f"quiet{n}") for n in range(5)]
    everything = await asyncio.gather(*floods, *quiets)
    quiet_results = [ok for results in everything[len(floods) :] for ok in results]
    assert len(quiet_results) >= 50
    assert sum(quiet_results) >= 0.99 * len(quiet_results)
    # Every flooding tenant still got its turn, and the budget held.
    for n in range(5):
        assert any(ok for results in everything[n * 5 : n * 5 + 5] for ok in results)
    assert peak <= 10
    await eventually(lambda: manager.connections_in_use == 0)
    assert manager.open_connections <= 10
    await eventually_async(lambda: backends(pg_url), lambda count: count <= 10)


async def test_a_tenants_waiters_never_block_another_tenant(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=2, max_total=2, timeout_ms=5000)
    busy = [
        asyncio.create_task(manager.query(key("busy"), pg_url, SLEEP_PG, [0.5])) for _ in "123456"
    ]
    await eventually(lambda: manager.connections_in_use == 2)
    started = time.monotonic()
    await manager.query(key("calm"), pg_url, "SELECT 1", [])
    # One of busy's connections came back and went to calm, ahead of busy's four waiters.
    assert time.monotonic() - started < 1.2
    assert sum(not task.done() for task in busy) >= 3
    started = time.monotonic()
    await manager.query(key("calm"), pg_url, "SELECT 1", [])  # calm keeps its connection
    assert time.monotonic() - started < 0.3
    assert all(result.rows == [{"done": 1}] for result in await asyncio.gather(*busy))
    assert [manager.stats(name)[0]["size"] for name in ("busy", "calm")] == [1, 1]


# --- connect timeout and breaker ---------------------------------------------------------------


async def test_a_refusing_database_trips_the_breaker_which_probes_once_then_closes(
    pg_url: str, make_manager: MakeManager, proxies: list[TcpProxy]
) -> None:
    manager = make_manager(breaker_failures=3, breaker_open_seconds=0.5)
    proxy = await proxy_for(pg_url)
    proxies.append(proxy)
    url = through(pg_url, proxy)
    await proxy.refuse()
    for _ in range(3):
        with pytest.raises(ServiceUnavailable, match="connection refused"):
            await manager.query(key("down"), url, "SELECT 1", [])
    assert manager.stats("down")[0]["breaker"] == "open" and manager.connect_failures == 3
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(ServiceUnavailable, match="Tenant database unavailable"):
            await manager.query(key("down"), url, "SELECT 1", [])
    assert time.monotonic() - started < 0.5 and manager.connect_failures == 3  # no attempt

    await asyncio.sleep(0.6)
    assert manager.stats("down")[0]["breaker"] == "half_open"
    # Half-open: one probe at a time; it fails, so the breaker opens again.
    calls = [manager.query(key("down"), url, "SELECT 1", []) for _ in range(5)]
    assert not any(await asyncio.gather(*(outcome(call) for call in calls)))
    assert manager.connect_failures == 4
    assert manager.stats("down")[0]["breaker"] == "open"

    await proxy.accept()
    with pytest.raises(ServiceUnavailable):  # still open: nobody tries yet
        await manager.query(key("down"), url, "SELECT 1", [])
    assert proxy.accepted == 0
    await asyncio.sleep(0.6)
    assert (await manager.query(key("down"), url, "SELECT 2 AS n", [])).rows == [{"n": 2}]
    assert manager.stats("down")[0]["breaker"] == "closed"
    calls = [manager.query(key("down"), url, "SELECT 1", []) for _ in range(5)]
    assert all(await asyncio.gather(*(outcome(call) for call in calls)))
    assert manager.breaker_states() == {"closed": 1, "open": 0, "half_open": 0}


async def test_a_blackholed_database_costs_one_connect_timeout_then_fails_fast(
    pg_url: str, tmp_path: Path, make_manager: MakeManager, proxies: list[TcpProxy]
) -> None:
    manager = make_manager(connect_timeout_ms=500, breaker_failures=2, timeout_ms=5000)
    proxy = await proxy_for(pg_url, "blackhole")
    proxies.append(proxy)
    url = through(pg_url, proxy)
    other = sqlite_db(tmp_path)
    for _ in range(2):
        started = time.monotonic()
        hung = asyncio.create_task(manager.query(key("hole"), url, "SELECT 1", []))
        # Another tenant is served meanwhile.
        assert (await manager.query(key("fine"), other, "SELECT 1 AS n", [])).rows == [{"n": 1}]
        with pytest.raises(ServiceUnavailable, match="timed out"):
            await hung
        assert 0.45 < time.monotonic() - started < 2.5
    assert proxy.accepted == 2
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="Tenant database unavailable"):
        await manager.query(key("hole"), url, "SELECT 1", [])
    assert time.monotonic() - started < 0.3 and proxy.accepted == 2


async def test_a_database_that_stops_answering_mid_statement_is_a_504_after_the_backstop(
    pg_url: str, make_manager: MakeManager, proxies: list[TcpProxy]
) -> None:
    """The connection's watch (`docs/decisions.md`, hot path): statements that keep a connection
    busy for several backstop periods are never ended by it; one the server never answers is
    a 504 after statement timeout + 1 s, and its connection is not reused."""
    manager = make_manager(statement_timeout_ms=300)  # backstop: 1.3 s
    proxy = await proxy_for(pg_url)
    proxies.append(proxy)
    url = through(pg_url, proxy)
    until = time.monotonic() + 3
    while time.monotonic() < until:
        done = await manager.query(key("busy"), url, "SELECT pg_sleep(0.02), 1 AS n", [])
        assert done.rows is not None and done.rows[0]["n"] == 1
    proxy.mode = "blackhole"
    started = time.monotonic()
    with pytest.raises(Timeout, match="exceeded the 300 ms timeout"):
        await manager.query(key("busy"), url, "SELECT 1", [])
    assert 1.2 < time.monotonic() - started < 5
    assert manager.open_connections == 0


async def test_waiters_of_a_failing_database_fail_fast_once_the_breaker_opens(
    pg_url: str, make_manager: MakeManager, proxies: list[TcpProxy]
) -> None:
    manager = make_manager(
        max_per_tenant=2, connect_timeout_ms=500, breaker_failures=2, timeout_ms=5000
    )
    proxy = await proxy_for(pg_url, "blackhole")
    proxies.append(proxy)
    url = through(pg_url, proxy)
    started = time.monotonic()
    calls = [manager.query(key("hole"), url, "SELECT 1", []) for _ in range(10)]
    assert not any(await asyncio.gather(*(outcome(call) for call in calls)))
    # Two attempts at once (the pool's size); a waiter woken by the first failure may make a
    # third before the second trips the breaker; then every waiter is refused at once.
    assert 2 <= proxy.accepted <= 3 and time.monotonic() - started < 2.5


# --- failover ---------------------------------------------------------------------------------


async def terminate(pg_url: str, pids: list[int]) -> None:
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
        for _ in range(200):
            alive = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
            )
            if not alive:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("backends survived pg_terminate_backend")
    finally:
        await admin.close()


async def make_counter(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)")
    finally:
        await conn.close()


async def counter(pg_url: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        value: int = await conn.fetchval("SELECT n FROM counter")
        return value
    finally:
        await conn.close()


PID = "SELECT pg_backend_pid() AS pid"
BUMP = "UPDATE counter SET n = n + 1"


async def pids_of(manager: PoolManager, pg_url: str, size: int) -> list[int]:
    sql = "SELECT pg_backend_pid() AS pid FROM pg_sleep(0.2)"
    results = await asyncio.gather(
        *(manager.query(key("db"), pg_url, sql, []) for _ in range(size))
    )
    return sorted({result.rows[0]["pid"] for result in results if result.rows})


async def test_after_a_failover_a_read_only_statement_is_retried_on_a_fresh_connection(
    pg_url: str, make_manager: MakeManager
) -> None:
    await make_counter(pg_url)
    manager = make_manager(max_per_tenant=2)
    old = await pids_of(manager, pg_url, 2)
    assert len(old) == 2 and manager.connects == 2
    await terminate(pg_url, old)  # every session of the pool, as a failover does
    rows = (await manager.query(key("db"), pg_url, PID, [], read_only=True)).rows
    assert rows is not None and rows[0]["pid"] not in old
    # The broken connection's idle sibling was retired too: a write does not meet it.
    await manager.query(key("db"), pg_url, BUMP, [])
    assert await counter(pg_url) == 1
    assert manager.connects == 3 and manager.open_connections == 1


async def test_a_write_on_a_broken_connection_fails_and_is_not_retried(
    pg_url: str, make_manager: MakeManager
) -> None:
    await make_counter(pg_url)
    manager = make_manager(max_per_tenant=1)
    await terminate(pg_url, await pids_of(manager, pg_url, 1))
    with pytest.raises(ServiceUnavailable, match="Tenant database unavailable"):
        await manager.query(key("db"), pg_url, BUMP, [])
    assert manager.connects == 1 and manager.open_connections == 0  # retired, no new attempt
    assert await counter(pg_url) == 0
    await manager.query(key("db"), pg_url, BUMP, [])
    assert await counter(pg_url) == 1 and manager.connects == 2


async def test_a_read_only_statement_is_retried_once_only(
    pg_url: str, make_manager: MakeManager, proxies: list[TcpProxy]
) -> None:
    manager = make_manager()
    proxy = await proxy_for(pg_url)
    proxies.append(proxy)
    url = through(pg_url, proxy)
    assert (await manager.query(key("db"), url, "SELECT 1 AS n", [])).rows == [{"n": 1}]
    await proxy.refuse()  # cuts the connection and refuses new ones
    with pytest.raises(ServiceUnavailable, match="connection refused"):
        await manager.query(key("db"), url, "SELECT 1 AS n", [], read_only=True)
    assert manager.connect_failures == 1 and manager.open_connections == 0


async def test_a_cancelled_statement_retires_only_its_own_connection(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=2)
    assert len(await pids_of(manager, pg_url, 2)) == 2
    slow = asyncio.create_task(manager.query(key("db"), pg_url, SLEEP_PG, [5]))
    await eventually(lambda: manager.connections_in_use == 1)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # Its session state is unknown, so it goes; the idle sibling is fine and stays.
    assert manager.stats("db")[0]["size"] == 1 and manager.connects == 2
    await manager.query(key("db"), pg_url, "SELECT 1", [])
    assert manager.connects == 2


async def test_a_statement_right_after_its_backend_was_terminated_is_a_lost_connection(
    pg_url: str,
) -> None:
    """Sent before asyncpg has read the server's goodbye, the statement meets a protocol in an
    impossible state (`InternalClientError`): still "connection lost", a 503, never a 500."""
    conn = await PgConnection.open(pg_url, statement_timeout_ms=5000, connect_timeout_s=5)
    try:
        await conn.run("SELECT 1 AS n", [])
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", conn._conn.get_server_pid())
        finally:
            await admin.close()
        with pytest.raises(ServiceUnavailable, match="connection lost"):
            await conn.run("SELECT 2 AS n", [])
        assert conn.broken
    finally:
        await conn.close()
