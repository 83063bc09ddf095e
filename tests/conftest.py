"""Shared fixtures: real PostgreSQL and Redis, each test with its own database or key prefix.

Services that do not answer skip their tests with one line, unless STK_REQUIRE_SERVICES=1 (CI),
where they fail: a green CI must mean every service test ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
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


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
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
        _unavailable("Redis", exc)
    prefix = f"stktest:{uuid.uuid4().hex[:12]}:"
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@pytest.fixture(params=["memory", "file", "redis"])
def kv_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each KV backend in turn, for the suites that hold them all to one contract."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path}/kv"
    return str(request.getfixturevalue("redis_url"))


# --- the Bridge app over real HTTP semantics (httpx → ASGI), with its lifespan ---------------

ADMIN_TOKEN = "test-admin-token-0123456789abcdef-xyz"


@dataclass
class Bridge:
    client: httpx.AsyncClient
    app: Any
    settings: Any
    data_dir: Path

    @property
    def rt(self) -> Any:
        return self.app.state.stk.rt

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def running_bridge(
    data_dir: Path,
    registry_url: str | None = None,
    kv_url: str = "memory://",
    master_keys: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Bridge]:
    """The app with its lifespan; `master_keys` lets several instances share one registry."""
    from bridge.app import create_app
    from tenancy.keyring import Keyring
    from tenancy.settings import load_settings

    settings = load_settings(
        data_dir=data_dir,
        registry_url=registry_url or f"sqlite+aiosqlite:///{data_dir}/registry.db",
        kv_url=kv_url,
        host_suffix="api.example.com",
        **overrides,
    )
    keyring = Keyring.parse(master_keys or Keyring.generate_entry("test"))
    app = create_app(settings, keyring, [ADMIN_TOKEN], migrate=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as c:
            yield Bridge(c, app, settings, data_dir)


@pytest.fixture(params=["sqlite", "postgresql"])
async def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The registry on SQLite and on PostgreSQL (asyncpg), both tested."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/registry.db"
        return
    async with pg_database() as url:
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path) as b:
        yield b


@pytest.fixture
async def make_manager() -> AsyncIterator[Any]:
    """Build tenant `PoolManager`s (`tests/pool_setup.py` settings, overridable); each is closed
    after the test and must then hold no connection."""
    from pool_setup import MANAGER_SETTINGS

    from tenancy.pools import PoolManager

    managers: list[PoolManager] = []

    def make(**overrides: Any) -> PoolManager:
        managers.append(PoolManager(**(MANAGER_SETTINGS | overrides)))
        return managers[-1]

    yield make
    for manager in managers:
        await manager.close_all()
        assert manager.open_connections == 0
