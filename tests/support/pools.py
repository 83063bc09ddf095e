"""Helpers and the `make_manager` fixture for the tenant pool tests (`tests/test_pools.py`,
`tests/test_pool_budget.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tenancy.pools import PoolManager

SLEEP_PG = "SELECT 1 AS done FROM pg_sleep($1::float8)"
MakeManager = Callable[..., PoolManager]
# What `make_manager` builds unless a test overrides it (the production defaults, mostly).
MANAGER_SETTINGS = {
    "max_per_tenant": 5,
    "max_total": 200,
    "timeout_ms": 2000,
    "idle_seconds": 300,
    "statement_timeout_ms": 10_000,
    "connect_timeout_ms": 2500,
    "breaker_failures": 5,
    "breaker_open_seconds": 5,
}


def sqlite_db(tmp_path: Path, name: str = "tenant.db") -> str:
    """A SQLite tenant database, already in WAL mode as the Bridge leaves it after its first
    connection (switching a fresh file to WAL from two connections at once can fail BUSY)."""
    path = tmp_path / name
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = WAL")
    return f"sqlite:///{path}"


def sqlite_threads() -> set[threading.Thread]:
    """aiosqlite's worker threads alive now: one per connection open, opening or stopping."""
    return {t for t in threading.enumerate() if t.name.endswith("(_connection_worker_thread)")}


async def backends(pg_url: str) -> int:
    """Connections the Bridge holds on the test database."""
    conn = await asyncpg.connect(pg_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'stk-bridge' AND datname = current_database()"
        )
        return count
    finally:
        await conn.close()


async def eventually(check: Callable[[], bool], seconds: float = 2) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def make_manager() -> AsyncIterator[MakeManager]:
    """Build tenant `PoolManager`s (`MANAGER_SETTINGS`, overridable); each is closed after the
    test and must then hold no connection."""
    managers: list[PoolManager] = []

    def make(**overrides: Any) -> PoolManager:
        managers.append(PoolManager(**(MANAGER_SETTINGS | overrides)))
        return managers[-1]

    yield make
    for manager in managers:
        await manager.close_all()
        assert manager.open_connections == 0
