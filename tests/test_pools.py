"""Tenant pools and statement execution on real PostgreSQL and real SQLite files."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tenancy.errors import BadRequest, Conflict, ServiceUnavailable, Timeout
from tenancy.pools import PoolKey, engine_of, verify_url

from support.pools import SLEEP_PG, MakeManager, backends, eventually, sqlite_db, sqlite_threads

SECRET = "S3cretPw-9f1"
# About a billion steps: far longer than any timeout below.
SPIN_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) AS n FROM c"
)
KEY = PoolKey("acme", "dev", "main", 1)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return sqlite_db(tmp_path)


def both(pg: str, lite: str) -> dict[str, str]:
    return {"postgresql": pg, "sqlite": lite}


def with_credentials(pg_url: str, user: str, port: int | None = None, db: str | None = None) -> str:
    parts = urlsplit(pg_url)
    host = f"{parts.hostname}:{port or parts.port or 5432}"
    return f"postgresql://{user}:{SECRET}@{host}/{db or parts.path.lstrip('/')}"


# --- URLs and verification --------------------------------------------------------------------


def test_engine_of_accepts_postgresql_and_sqlite_only() -> None:
    assert engine_of("postgresql://u:p@h/db") == "postgresql"
    assert engine_of("postgres://u:p@h/db") == "postgresql"
    assert engine_of("sqlite:////var/data/t.db") == "sqlite"
    for url in (f"mysql://u:{SECRET}@h/db", "sqlite:///", "sqlite:///:memory:", "http://h"):
        with pytest.raises(BadRequest) as caught:
            engine_of(url)
        assert SECRET not in caught.value.message and "@h" not in caught.value.message


async def test_verify_url_accepts_working_databases(pg_url: str, tmp_path: Path) -> None:
    assert await verify_url(pg_url) == "postgresql"
    assert await verify_url(sqlite_db(tmp_path)) == "sqlite"


async def test_verify_url_never_creates_a_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(BadRequest, match="cannot open a SQLite database there"):
        await verify_url(f"sqlite:///{missing}")
    assert not missing.exists()
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database file, just text long enough to have a header" * 4)
    # The same answer: the check tells nobody which files exist (issue 9 row 3).
    with pytest.raises(BadRequest, match="cannot open a SQLite database there"):
        await verify_url(f"sqlite:///{junk}")


@pytest.mark.parametrize(
    ("user", "port", "db", "reason"),
    [
        ("postgres", 1, None, "the database server could not be reached"),
        ("stk_no_such_role", None, None, "authentication failed"),
        ("postgres", None, "stk_no_such_db", "database does not exist"),
    ],
)
async def test_verify_url_failures_are_sanitized(
    pg_url: str, user: str, port: int | None, db: str | None, reason: str
) -> None:
    url = with_credentials(pg_url, user, port, db)
    with pytest.raises(BadRequest) as caught:
        await verify_url(url, timeout_s=3)
    message = caught.value.message
    assert message == f"Connection check failed: {reason}"
    assert SECRET not in message and url not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- statements -------------------------------------------------------------------------------


async def test_rows_versus_affected_is_decided_by_the_driver(
    engine_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager()

    async def run(sql: str | dict[str, str], *args: Any) -> tuple[Any, Any]:
        result = await manager.query(KEY, engine_url, sql, args)
        return result.rows, result.affected

    ddl = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"
    assert await run(ddl) == (None, 0)
    insert = both(
        "INSERT INTO items (id, name) VALUES (1, $1), (2, $2)",
        "INSERT INTO items (id, name) VALUES (1, ?), (2, ?)",
    )
    assert await run(insert, "a", "b") == (None, 2)
    returning = both(
        "INSERT INTO items (id, name) VALUES (3, $1) RETURNING id, name",
        "INSERT INTO items (id, name) VALUES (3, ?) RETURNING id, name",
    )
    assert await run(returning, "c") == ([{"id": 3, "name": "c"}], None)
    select = both(
        "SELECT id, name FROM items WHERE id > $1", "SELECT id, name FROM items WHERE id > ?"
    )
    assert await run(select, 1) == ([{"id": 2, "name": "b"}, {"id": 3, "name": "c"}], None)
    assert await run(select, 99) == ([], None)  # an empty result set is still rows
    update = both(
        "UPDATE items SET name = $1 WHERE id = 1", "UPDATE items SET name = ? WHERE id = 1"
    )
    assert await run(update, "z") == (None, 1)
    assert await run(update, "y") == (None, 1)  # the prepared statement again, still a count
    assert await run("UPDATE items SET name = 'q' WHERE id = 99") == (None, 0)
    assert await run("DELETE FROM items") == (None, 3)
    with pytest.raises(BadRequest, match=r"no \w+ form"):
        await run({"mysql": "SELECT 1"})


async def test_constraint_violations_name_the_constraint_never_the_values(
    engine_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager()
    sqlite = engine_of(engine_url) == "sqlite"

    async def run(sql: str, *args: Any) -> Any:
        if sqlite:
            for n in range(len(args), 0, -1):
                sql = sql.replace(f"${n}", "?")
        return await manager.query(KEY, engine_url, sql, args)

    await run("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await run(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id),"
        " email TEXT NOT NULL, qty INTEGER CONSTRAINT qty_positive CHECK (qty > 0),"
        " CONSTRAINT child_email_key UNIQUE (email))"
    )
    await run("INSERT INTO parent (id) VALUES (1)")
    await run("INSERT INTO child (id, parent_id, email, qty) VALUES (1, 1, $1, 1)", "dup@x.io")

    with pytest.raises(Conflict) as unique:
        await run("INSERT INTO child (id, email) VALUES (2, $1)", "dup@x.io")
    assert unique.value.message == (
        "Unique constraint 'child.email' violated"
        if sqlite
        else "Unique constraint 'child_email_key' violated"
    )
    with pytest.raises(BadRequest) as foreign:
        await run("INSERT INTO child (id, parent_id, email) VALUES (3, $1, 'f@x.io')", 4242)
    assert foreign.value.message.startswith("Foreign key constraint")
    with pytest.raises(BadRequest) as not_null:
        await run("INSERT INTO child (id, email) VALUES (4, NULL)")
    assert not_null.value.message == "Missing value for required column 'email'"
    with pytest.raises(BadRequest) as check:
        await run("INSERT INTO child (id, email, qty) VALUES (5, 'c@x.io', $1)", -7)
    assert check.value.message == "Check constraint 'qty_positive' violated"
    with pytest.raises(BadRequest) as syntax:
        await run("SELEC email FROM child")
    with pytest.raises(BadRequest) as missing:
        await run("SELECT * FROM secret_table_name")
    for error in (unique, foreign, not_null, check, syntax, missing):
        message = error.value.message
        for leak in ("dup@x.io", "4242", "-7", "SELEC", "secret_table_name", "DETAIL", "Key ("):
            assert leak not in message
        assert error.value.__suppress_context__
    assert syntax.value.message.startswith("Statement failed: ")
    assert (await run("SELECT count(*) AS n FROM child")).rows == [{"n": 1}]


async def test_postgres_statement_timeout_keeps_the_connection(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(statement_timeout_ms=200)
    pid = (await manager.query(KEY, pg_url, "SELECT pg_backend_pid() AS pid", [])).rows
    started = time.monotonic()
    with pytest.raises(Timeout, match="200 ms"):
        await manager.query(KEY, pg_url, SLEEP_PG, [2])
    assert time.monotonic() - started < 1.5
    # The server cancelled the statement; the same session serves the next query.
    assert (await manager.query(KEY, pg_url, "SELECT pg_backend_pid() AS pid", [])).rows == pid


async def test_sqlite_statement_timeout_interrupts_the_statement(
    tmp_path: Path, make_manager: MakeManager
) -> None:
    manager = make_manager(statement_timeout_ms=200)
    url = sqlite_db(tmp_path)
    started = time.monotonic()
    with pytest.raises(Timeout, match="200 ms"):
        await manager.query(KEY, url, SPIN_SQLITE, [])
    assert time.monotonic() - started < 1.5
    assert (await manager.query(KEY, url, "SELECT 1 AS one", [])).rows == [{"one": 1}]


async def test_session_changing_statements_do_not_leak_into_later_queries(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=1)
    pid_sql = "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS path"
    first = (await manager.query(KEY, pg_url, pid_sql, [])).rows
    assert (await manager.query(KEY, pg_url, pid_sql, [])).rows == first  # reused, not reset
    assert (await manager.query(KEY, pg_url, "SET search_path TO nowhere", [])).affected == 0
    after = (await manager.query(KEY, pg_url, pid_sql, [])).rows
    assert after is not None and first is not None
    assert after[0]["path"] == first[0]["path"] != "nowhere"
    assert after[0]["pid"] != first[0]["pid"]


async def test_json_columns_round_trip_as_python_values(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager()
    await manager.query(KEY, pg_url, "CREATE TABLE docs (id int, body jsonb, raw json)", [])
    body = {"tags": ["a", "b"], "n": 1, "nested": {"ok": True}}
    await manager.query(KEY, pg_url, "INSERT INTO docs VALUES (1, $1, $2)", [body, [1, 2]])
    rows = (await manager.query(KEY, pg_url, "SELECT body, raw FROM docs", [])).rows
    assert rows == [{"body": body, "raw": [1, 2]}]


# --- pools ------------------------------------------------------------------------------------


async def test_each_secret_version_has_its_pool_and_retire_waits_for_in_flight(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager()
    old, new = KEY, PoolKey("acme", "dev", "main", 2)
    slow = asyncio.create_task(manager.query(old, pg_url, SLEEP_PG, [0.5]))
    await eventually(lambda: manager.connections_in_use == 1)
    await manager.query(new, pg_url, "SELECT 1", [])
    assert [s["version"] for s in manager.stats("acme")] == [1, 2]

    assert manager.retire("acme", keep_version=2) == 1
    assert [s["version"] for s in manager.stats("acme")] == [2]
    assert manager.open_connections == 2  # the old pool drains
    assert (await slow).rows == [{"done": 1}]  # the in-flight query finished normally
    await eventually(lambda: manager.open_connections == 1)
    assert await backends(pg_url) == 1
    await manager.query(new, pg_url, "SELECT 1", [])

    assert manager.retire("acme", env="prod") == 0
    assert manager.retire("acme", env="dev", alias="main") == 1
    assert manager.open_pools == 0


async def test_a_pool_never_exceeds_its_max_size(pg_url: str, make_manager: MakeManager) -> None:
    manager = make_manager()
    queries = [manager.query(KEY, pg_url, SLEEP_PG, [0.3], max_size=3) for _ in range(8)]
    running = asyncio.gather(*queries)
    await eventually(lambda: manager.connections_in_use == 3)
    assert await backends(pg_url) == 3
    assert manager.stats("acme")[0] | {"in_use": 3} == {
        "env": "dev",
        "alias": "main",
        "version": 1,
        "engine": "postgresql",
        "max_size": 3,
        "size": 3,
        "in_use": 3,
        "idle": 0,
        "breaker": "closed",
    }
    assert all(result.rows == [{"done": 1}] for result in await running)
    assert await backends(pg_url) == 3


async def test_pool_exhausted_fails_with_503_after_the_wait(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=1, timeout_ms=200)
    slow = asyncio.create_task(manager.query(KEY, pg_url, SLEEP_PG, [0.8]))
    await eventually(lambda: manager.connections_in_use == 1)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="Connection pool exhausted"):
        await manager.query(KEY, pg_url, "SELECT 1", [])
    assert 0.15 < time.monotonic() - started < 0.7
    assert (await slow).rows == [{"done": 1}]


async def test_concurrent_first_queries_build_one_pool(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager()
    results = await asyncio.gather(
        *(manager.query(KEY, pg_url, "SELECT $1::int AS n", [n]) for n in range(50))
    )
    assert [r.rows for r in results] == [[{"n": n}] for n in range(50)]
    assert manager.open_pools == 1
    assert 1 <= manager.open_connections <= 5
    assert await backends(pg_url) == manager.open_connections


async def test_a_full_budget_takes_the_least_recently_used_idle_connection(
    tmp_path: Path, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=1, max_total=2)
    urls = {name: sqlite_db(tmp_path, f"{name}.db") for name in ("aaa", "bbb", "ccc")}

    def key(name: str) -> PoolKey:
        return PoolKey(name, "dev", "main", 1)

    for name in ("aaa", "bbb", "aaa", "ccc"):
        await manager.query(key(name), urls[name], "SELECT 1", [])
    # bbb was least recently used when ccc needed a slot: its connection went, its pool stays.
    assert [manager.stats(name)[0]["size"] for name in ("aaa", "bbb", "ccc")] == [1, 0, 1]
    assert manager.open_connections == 2 and manager.connects == 3
    await manager.query(key("bbb"), urls["bbb"], "SELECT 1", [])
    assert [manager.stats(name)[0]["size"] for name in ("aaa", "bbb", "ccc")] == [0, 1, 1]
    assert manager.open_connections == 2 and manager.connects == 4


async def test_a_full_budget_waits_for_a_connection_to_come_back_then_gives_503(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager(max_per_tenant=1, max_total=1, timeout_ms=1000)
    busy, other = KEY, PoolKey("globex", "dev", "main", 1)
    # A connection that comes back within the wait is closed for the waiting tenant.
    slow = asyncio.create_task(manager.query(busy, pg_url, SLEEP_PG, [0.3]))
    await eventually(lambda: manager.connections_in_use == 1)
    assert (await manager.query(other, pg_url, "SELECT 2 AS n", [])).rows == [{"n": 2}]
    assert (await slow).rows == [{"done": 1}]
    assert manager.stats("acme")[0]["size"] == 0 and manager.open_connections == 1
    await eventually(lambda: manager.connections_in_use == 0)
    # Nothing comes back in time: 503 once the wait is over.
    slow = asyncio.create_task(manager.query(other, pg_url, SLEEP_PG, [1.5]))
    await eventually(lambda: manager.connections_in_use == 1)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="capacity"):
        await manager.query(busy, pg_url, "SELECT 1", [])
    assert 0.9 < time.monotonic() - started < 1.4
    await slow
    assert await backends(pg_url) == 1


async def test_idle_pools_are_closed(tmp_path: Path, make_manager: MakeManager) -> None:
    manager = make_manager(idle_seconds=0.1)
    url = sqlite_db(tmp_path)
    await manager.query(KEY, url, "SELECT 1", [])
    assert await manager.close_idle() == 0
    await asyncio.sleep(0.15)
    assert await manager.close_idle() == 1
    assert manager.open_pools == 0 and manager.open_connections == 0

    janitor = asyncio.create_task(manager.run_janitor(interval_s=0.05))
    try:
        await manager.query(KEY, url, "SELECT 1", [])
        assert manager.open_pools == 1
        await eventually(lambda: manager.open_pools == 0)
    finally:
        janitor.cancel()


async def test_changed_limits_apply_to_the_same_pool(
    pg_url: str, make_manager: MakeManager
) -> None:
    manager = make_manager()
    pid_sql = "SELECT pg_backend_pid() AS pid"

    async def run(sql: str, *args: Any, size: int = 3, timeout: int = 5000) -> Any:
        result = await manager.query(
            KEY, pg_url, sql, args, max_size=size, statement_timeout_ms=timeout
        )
        return result.rows

    await asyncio.gather(*(run(SLEEP_PG, 0.2) for _ in range(3)))
    assert manager.stats("acme")[0]["size"] == 3 and manager.connects == 3
    # Smaller: idle connections beyond the new size close; the others are kept, not reopened.
    pid = await run(pid_sql, size=1)
    assert [(s["max_size"], s["size"]) for s in manager.stats("acme")] == [(1, 1)]
    assert manager.connects == 3 and manager.open_pools == 1
    await eventually(lambda: manager.open_connections == 1)
    # Bigger: the pool may grow again, still the same connection first.
    assert await run(pid_sql, size=4) == pid and manager.connects == 3
    # Busy connections beyond a smaller size close when they come back.
    slow = [asyncio.create_task(run(SLEEP_PG, 0.3, size=4)) for _ in range(3)]
    await eventually(lambda: manager.connections_in_use == 3)
    assert await run(pid_sql, size=2) is not None
    await asyncio.gather(*slow)
    assert manager.stats("acme")[0]["size"] == 2
    # A new statement timeout replaces the connections (it is set when one opens).
    with pytest.raises(Timeout, match="300 ms"):
        await run(SLEEP_PG, 2, size=2, timeout=300)
    assert manager.stats("acme")[0]["size"] <= 2 and manager.open_pools == 1
    await eventually(lambda: manager.open_connections <= 2)
    assert await backends(pg_url) == manager.open_connections


async def test_unreachable_tenant_database_is_503_without_secrets(
    pg_url: str, tmp_path: Path, make_manager: MakeManager
) -> None:
    manager = make_manager(timeout_ms=1000)
    url = with_credentials(pg_url, "postgres", port=1)
    with pytest.raises(ServiceUnavailable) as caught:
        await manager.query(KEY, url, "SELECT 1", [])
    assert caught.value.message == "Tenant database unavailable: connection refused"
    assert SECRET not in caught.value.message

    missing = tmp_path / "gone.db"
    with pytest.raises(ServiceUnavailable, match="file does not exist"):
        await manager.query(PoolKey("other", "dev", "main", 1), f"sqlite:///{missing}", "X", [])
    assert not os.path.exists(missing)


async def test_a_failed_sqlite_open_leaves_no_thread_behind(
    tmp_path: Path, make_manager: MakeManager
) -> None:
    """aiosqlite stops a failed open's thread without waiting: one still running when the event
    loop closes fails there with "Event loop is closed". Checked at once, ten times over, since
    without the wait the thread is only usually still alive."""
    manager = make_manager()
    url = f"sqlite:///{tmp_path / 'gone.db'}"
    before = sqlite_threads()
    for version in range(10):  # a pool each: the breaker would stop trying after 5 failures
        with pytest.raises(ServiceUnavailable, match="file does not exist"):
            await manager.query(PoolKey("shop", "dev", "main", version), url, "SELECT 1", [])
        assert sqlite_threads() <= before
        with pytest.raises(BadRequest, match="cannot open a SQLite database there"):
            await verify_url(url)
        assert sqlite_threads() <= before


async def test_connections_opened_together_on_a_fresh_sqlite_file_all_succeed(
    tmp_path: Path,
) -> None:
    """Two connections switching a fresh file to WAL at once: SQLite answers one of them BUSY
    without waiting; the driver retries, so a pool's concurrent first connections all open."""
    import sqlite3

    from tenancy.engines.sqlite import SqliteConnection

    for attempt in range(25):
        path = tmp_path / f"fresh{attempt}.db"
        sqlite3.connect(path).close()  # an empty file, still in rollback-journal mode
        conns = await asyncio.gather(*(SqliteConnection.open(str(path), 2000) for _ in range(4)))
        try:
            for conn in conns:
                assert (await conn.run("PRAGMA journal_mode", [])).rows == [{"journal_mode": "wal"}]
        finally:
            await asyncio.gather(*(conn.close() for conn in conns))
