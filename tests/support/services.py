"""Real services for the tests: skip-or-fail when one is missing, and isolation per test.

Services that do not answer skip their tests with one line, unless STK_REQUIRE_SERVICES=1 (CI),
where they fail: a green CI must mean every service test ran. Each test gets its own PostgreSQL
database or Redis key prefix, removed after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
import redis.asyncio as aioredis

REQUIRE = os.environ.get("STK_REQUIRE_SERVICES") == "1"
PG_URL = os.environ.get("STK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip with one line, or fail when STK_REQUIRE_SERVICES=1 (CI)."""
    message = f"{service} {reason}"
    if REQUIRE:
        pytest.fail(f"STK_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


def _unreachable(service: str, exc: BaseException) -> NoReturn:
    unavailable(service, f"unreachable ({type(exc).__name__}); set STK_TEST_* or start it")


def asyncpg_url(url: str) -> str:
    """A plain `postgresql://` URL as the registry's SQLAlchemy URL (asyncpg driver)."""
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh, uniquely named PostgreSQL database (plain `postgresql://` URL), dropped after."""
    try:
        admin = await asyncpg.connect(PG_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        _unreachable("PostgreSQL", exc)
    name = f"stk_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def registry_database(engine: str) -> AsyncIterator[str | None]:
    """The registry URL for `engine`: None on "sqlite" (the Bridge's own file in its data
    directory), a fresh database on "postgresql"."""
    if engine == "sqlite":
        yield None
        return
    async with pg_database() as url:
        yield asyncpg_url(url)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The test Redis with a unique key prefix (as `?prefix=`); its keys are removed after."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _unreachable("Redis", exc)
    prefix = f"stktest:{uuid.uuid4().hex[:12]}:"
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The registry on SQLite and on PostgreSQL (asyncpg), both tested."""
    async with registry_database(request.param) as url:
        yield url or f"sqlite+aiosqlite:///{tmp_path}/registry.db"


@pytest.fixture(params=["memory", "file", "redis", "s3"])
def kv_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each KV backend in turn, for the suites that hold them all to one contract."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path}/kv"
    if request.param == "s3":
        return str(request.getfixturevalue("s3_kv_url"))
    return str(request.getfixturevalue("redis_url"))
