"""The Bridge app over real HTTP semantics (httpx → ASGI), with its lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN_TOKEN = "test-admin-token-0123456789abcdef-xyz"
ADMIN_PREFIX = "/admin/v1"
CLIENT_ADDRESS = ("203.0.113.7", 5000)


def stale_total(metrics: str, dependency: str) -> float:
    """`stk_dependency_stale_total` for `dependency` in a `/metrics` text: answers served from
    a stale value because that dependency failed (`docs/tenancy.md`)."""
    pattern = rf'^stk_dependency_stale_total{{dependency="{dependency}"}} (\S+)$'
    found = re.search(pattern, metrics, re.MULTILINE)
    assert found, metrics
    return float(found.group(1))


@dataclass
class Bridge:
    client: httpx.AsyncClient
    app: Any
    settings: Any
    data_dir: Path

    @property
    def rt(self) -> Any:
        return self.app.runtime

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def admin(
        self, method: str, path: str, status: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        """`<method> /admin/v1<path>` with the admin token; asserts the status when given.

        The one admin-API helper of the in-process tests (`support.processes.Server.admin` is
        its twin over a real socket)."""
        r = await self.client.request(
            method, ADMIN_PREFIX + path, headers=self.admin_headers, **kwargs
        )
        if status is not None:
            assert r.status_code == status, (method, path, r.text)
        return r

    async def admin_json(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON answer of an admin call that must answer `status` (None when empty)."""
        r = await self.admin(method, path, status, **kwargs)
        return r.json() if r.content else None


@asynccontextmanager
async def running_bridge(
    data_dir: Path,
    registry_url: str | None = None,
    kv_url: str = "memory://",
    master_keys: str | None = None,
    admin_tokens: Sequence[str] = (ADMIN_TOKEN,),
    span_exporter: Any = None,
    **overrides: Any,
) -> AsyncIterator[Bridge]:
    """The app with its lifespan; `master_keys` lets several instances share one registry;
    `span_exporter` receives the spans when `tracing` is on (`bridge/tracing.py`)."""
    from bridge.app import create_app
    from tenancy.keyring import Keyring
    from tenancy.settings import load_settings

    overrides.setdefault("tenant_data_dir", data_dir.parent)  # tests keep tenant files around it
    settings = load_settings(
        data_dir=data_dir,
        registry_url=registry_url or f"sqlite+aiosqlite:///{data_dir}/registry.db",
        kv_url=kv_url,
        host_suffix="api.example.com",
        **overrides,
    )
    keyring = Keyring.parse(master_keys or Keyring.generate_entry("test"))
    app = create_app(
        settings, keyring, list(admin_tokens), migrate=True, span_exporter=span_exporter
    )
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as c:
            yield Bridge(c, app, settings, data_dir)


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path) as b:
        yield b
