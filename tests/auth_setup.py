"""Tenants for the end-user auth tests, registered and published through the real admin API.

- `alpha` (envs prod + dev): prod lets users sign up (extra role `writer`), access TTL 120 s,
  CORS origin `https://app.alpha.test`; dev keeps signup disabled, CORS `http://localhost:5173`.
- `beta` (prod): signup enabled, no CORS.
- `gamma` (prod): no `config/auth.yaml` at all (the defaults: signup disabled, no origins).

Each env serves `logics/whoami` (authenticated; answers `:auth.sub`) and `logics/writers`
(role `writer`) from its own empty SQLite database.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from conftest import Bridge, pg_database, running_bridge

PASSWORD = "correct horse battery"
LOGICS = {
    "logics/whoami.sql": "---\nauth: authenticated\n---\nSELECT :auth.sub AS sub\n",
    "logics/writers.sql": "---\nroles: [writer]\n---\nSELECT 1 AS ok\n",
}
ALPHA_PROD_AUTH = """
signup: {enabled: true, roles: [writer]}
tokens: {accessTtlSeconds: 120, refreshTtlSeconds: 3600}
cors: {origins: ["https://app.alpha.test"]}
"""
ALPHA_DEV_AUTH = 'cors: {origins: ["http://localhost:5173"]}\n'
BETA_AUTH = "signup: {enabled: true}\n"
RELEASES = {
    ("alpha", "prod"): ALPHA_PROD_AUTH,
    ("alpha", "dev"): ALPHA_DEV_AUTH,
    ("beta", "prod"): BETA_AUTH,
    ("gamma", "prod"): None,
}


def host(project: str) -> dict[str, str]:
    return {"Host": f"{project}.api.example.com"}


def bearer(token: str, project: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    return {**host(project), **headers} if project else headers


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class AuthWorld:
    bridge: Bridge

    @property
    def client(self) -> httpx.AsyncClient:
        return self.bridge.client

    async def admin(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(
            method, f"/admin/v1{url}", headers=self.bridge.admin(), **kwargs
        )

    async def post(
        self, path: str, body: Any, project: str = "alpha", **headers: str
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers={**host(project), **headers})

    async def signup(
        self, email: str, password: str = PASSWORD, project: str = "alpha", **headers: str
    ) -> httpx.Response:
        body = {"email": email, "password": password}
        return await self.post("/auth/signup", body, project, **headers)

    async def login(
        self, email: str, password: str = PASSWORD, project: str = "alpha", **headers: str
    ) -> httpx.Response:
        body = {"email": email, "password": password}
        return await self.post("/auth/login", body, project, **headers)

    async def session(self, project: str = "alpha") -> dict[str, Any]:
        """A fresh user, signed up and logged in: the login answer."""
        email = new_email()
        r = await self.signup(email, project=project)
        assert r.status_code == 201, r.text
        r = await self.login(email, project=project)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def whoami(self, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post("/call", json={"path": "logics/whoami"}, headers=headers)


async def publish(world: AuthWorld, project: str, env: str, auth: str | None) -> None:
    database = world.bridge.data_dir / f"{project}-{env}.db"
    sqlite3.connect(database).close()
    url = f"/projects/{project}/envs/{env}"
    r = await world.admin("PUT", f"{url}/connections/main", json={"url": f"sqlite:///{database}"})
    assert r.status_code == 200, r.text
    files = dict(LOGICS) | ({"config/auth.yaml": auth} if auth is not None else {})
    r = await world.admin("POST", f"{url}/releases", json={"files": files})
    assert r.status_code == 201, r.text


@asynccontextmanager
async def auth_world(data_dir: Path, registry: str = "sqlite") -> AsyncIterator[AuthWorld]:
    """The three tenants on a Bridge whose registry is SQLite or PostgreSQL."""
    async with _registry_url(data_dir, registry) as url, running_bridge(data_dir, url) as bridge:
        world = AuthWorld(bridge)
        for project, envs in (("alpha", ["prod", "dev"]), ("beta", ["prod"]), ("gamma", ["prod"])):
            r = await world.admin("POST", "/projects", json={"id": project, "envs": envs})
            assert r.status_code == 201, r.text
        for (project, env), auth in RELEASES.items():
            await publish(world, project, env, auth)
        yield world


@asynccontextmanager
async def _registry_url(data_dir: Path, registry: str) -> AsyncIterator[str | None]:
    if registry == "sqlite":
        yield None
        return
    async with pg_database() as url:
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1)
