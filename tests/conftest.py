"""Shared fixtures: real PostgreSQL and Redis, each test with its own database or key prefix.

Services that do not answer skip their tests with one line, unless STK_REQUIRE_SERVICES=1 (CI),
where they fail: a green CI must mean every service test ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis

PG_URL = os.environ.get("STK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("STK_REQUIRE_SERVICES") == "1"


def _unavailable(service: str, exc: BaseException) -> None:
    message = f"{service} unreachable ({type(exc).__name__}); set STK_TEST_* or start it"
    if REQUIRE:
        pytest.fail(f"STK_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, uniquely named PostgreSQL database (plain `postgresql://` URL), dropped after."""
    try:
        admin = await asyncpg.connect(PG_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable("PostgreSQL", exc)
    name = f"stk_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The test Redis with a unique key prefix (as `?prefix=`); its keys are removed after."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _unavailable("Redis", exc)
    prefix = f"stktest:{uuid.uuid4().hex[:12]}:"
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@pytest.fixture
def data_dir(tmp_path: object) -> Iterator[object]:
    yield tmp_path
