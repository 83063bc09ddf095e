"""The one builder of test tenants: a running Bridge and what is registered on it, step by step,
through the real admin API (never by writing to the registry behind its back).

Compose the steps a test needs (`project`, `connect`, `publish`, `api_key`; `tenant` and `demo`
for the usual combinations), then act as a client (`call`, `post`, end-user `signup`/`login`).
The scenarios built with it live next to it (`support.auth`, `support.crud`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tenancy.releases.compile.compiler import load_project_dir

from support.bridge import ADMIN_TOKEN, Bridge
from support.processes import Server, master_keys, serving, stk_env

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
PASSWORD = "correct horse battery"


def demo_files(**extra_logics: str) -> dict[str, str]:
    """The demo project's files, plus public logics `logics/<name>.sql` with the given SQL."""
    files = load_project_dir(DEMO_DIR)
    for name, sql in extra_logics.items():
        files[f"logics/{name}.sql"] = f"---\nauth: public\n---\n{sql}\n"
    return files


def seeded_sqlite(path: Path, extra_sql: str = "") -> str:
    """A SQLite database at `path` with the demo rows (then `extra_sql`); its connection URL."""
    db = sqlite3.connect(path)
    db.executescript((DEMO_DIR / "seed" / "sqlite.sql").read_text() + extra_sql)
    db.close()
    return f"sqlite:///{path}"


def empty_sqlite(path: Path) -> str:
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


async def seed_postgresql(url: str) -> str:
    """The demo schema and rows in the PostgreSQL database at `url`; the URL."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((DEMO_DIR / "seed" / "postgresql.sql").read_text())
    finally:
        await conn.close()
    return url


def host(project: str) -> dict[str, str]:
    return {"Host": f"{project}.api.example.com"}


def bearer(token: str, project: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    return {**host(project), **headers} if project else headers


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class World:
    """Tenants on one Bridge. `home` is the project `post`/`signup`/`login` address by default;
    `keys` maps a label to the API key made under it, `key_ids` to its key id."""

    bridge: Bridge
    home: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.bridge.client

    async def admin(
        self, method: str, path: str, status: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.bridge.admin(method, path, status, **kwargs)

    # --- building ------------------------------------------------------------------------

    async def project(self, project: str, **fields: Any) -> None:
        """`POST /projects` with `fields` (`envs`, `hosts`, ...) beside the id."""
        await self.admin("POST", "/projects", 201, json={"id": project, **fields})

    async def connect(self, project: str, env: str, url: str, alias: str = "main") -> None:
        path = f"/projects/{project}/envs/{env}/connections/{alias}"
        await self.admin("PUT", path, 200, json={"url": url})

    async def publish(self, project: str, env: str, files: dict[str, str]) -> str:
        """Publish `files`; the release id."""
        path = f"/projects/{project}/envs/{env}/releases"
        r = await self.admin("POST", path, 201, json={"files": files})
        return str(r.json()["release"])

    async def api_key(
        self,
        project: str,
        env: str,
        name: str,
        roles: Sequence[str] = (),
        label: str | None = None,
    ) -> str:
        """A new API key, kept under `label` (default: its name); the key."""
        path = f"/projects/{project}/envs/{env}/api-keys"
        r = await self.admin("POST", path, 201, json={"name": name, "roles": list(roles)})
        answer = r.json()
        self.keys[label or name], self.key_ids[label or name] = answer["apiKey"], answer["keyId"]
        return str(answer["apiKey"])

    async def tenant(
        self,
        project: str,
        env: str,
        url: str,
        files: dict[str, str],
        keys: dict[str, Sequence[str]] | None = None,
    ) -> None:
        """An env's connection `main`, its release and API keys (name → roles)."""
        await self.connect(project, env, url)
        await self.publish(project, env, files)
        for name, roles in (keys or {}).items():
            await self.api_key(project, env, name, roles)

    async def demo(self, project: str, *, roles: Sequence[str] = ("admin",)) -> str:
        """Project + seeded SQLite database + the demo published + an API key; the key."""
        await self.project(project)
        url = seeded_sqlite(self.bridge.data_dir / f"{project}.db")
        await self.tenant(project, "prod", url, demo_files())
        return await self.api_key(project, "prod", "test", roles, label=project)

    # --- calling -------------------------------------------------------------------------

    async def call(
        self,
        path: str,
        params: Any = None,
        *,
        project: str | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """`POST /call`; `project` sets the Host, `key` (a label of `keys`) the API key."""
        sent = {**(host(project) if project else {}), **(headers or {})}
        if key is not None:
            sent["X-Santokit-Api-Key"] = self.keys[key]
        body: dict[str, Any] = {"path": path}
        if params is not None:
            body["params"] = params
        return await self.client.post("/call", json=body, headers=sent)

    async def post(
        self, path: str, body: Any, project: str | None = None, **headers: str
    ) -> httpx.Response:
        """`POST <path>` as `project`'s client (the Host names it)."""
        target = project or self.home
        assert target, "no project and no home project"
        return await self.client.post(path, json=body, headers={**host(target), **headers})

    async def signup(
        self, email: str, password: str = PASSWORD, project: str | None = None, **headers: str
    ) -> httpx.Response:
        body = {"email": email, "password": password}
        return await self.post("/auth/signup", body, project, **headers)

    async def login(
        self, email: str, password: str = PASSWORD, project: str | None = None, **headers: str
    ) -> httpx.Response:
        body = {"email": email, "password": password}
        return await self.post("/auth/login", body, project, **headers)

    async def session(self, project: str | None = None) -> dict[str, Any]:
        """A fresh end user, signed up and logged in: the login answer."""
        email = new_email()
        r = await self.signup(email, project=project)
        assert r.status_code == 201, r.text
        r = await self.login(email, project=project)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer


@contextmanager
def serving_demo_tenant(tmp: Path) -> Iterator[Server]:
    """A real `stk-bridge serve` (admin token `ADMIN_TOKEN`) with project `demo` and its seeded
    SQLite connection `prod/main`, no release yet: the start of every process-level demo test."""
    env = stk_env(data_dir=str(tmp / "data"), master_keys=master_keys(), tenant_data_dir=str(tmp))
    env["STK_ADMIN_TOKENS"] = ADMIN_TOKEN
    with serving(["serve"], env, tmp) as server:
        assert server.admin("POST", "/projects", json={"id": "demo"}).status_code == 201
        url = {"url": seeded_sqlite(tmp / "demo.db")}
        assert server.admin("PUT", "/projects/demo/envs/prod/connections/main", json=url).is_success
        yield server
