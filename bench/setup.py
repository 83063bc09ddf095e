"""Databases, registry schema, and the projects registered through the real admin API.

The bench project (S1-S3) and the publish project (S7) go through the admin API like an
operator's would; only the large fleet (S4-S6) is written in bulk (`fleet.py`). The auto-CRUD
scenarios need routes other work is still building: their preparation answers a skip reason
instead of failing when a route does not answer yet.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from bench import procs
from bench.client import Client
from bench.context import ENV, PROJECT_DIR, Bench, host
from bench.pg import Postgres

FLEET_DATABASES = 4
SEED = PROJECT_DIR / "seed" / "postgresql.sql"
USER = {"email": "bench-user@example.com", "password": "bench-password-0123"}
USER_NOTES = 300


async def databases(pg: Postgres) -> tuple[str, str, list[str]]:
    """(registry, bench project database, fleet databases), the tenant ones seeded.

    The fleet databases are copies of the seeded bench database (CREATE DATABASE ... TEMPLATE),
    made before anything connects to it.
    """
    registry = await pg.create_database("registry")
    app = await pg.create_database("app")
    await pg.execute(app, SEED.read_text())
    fleet = [await pg.create_database(f"t{i}", template=app) for i in range(FLEET_DATABASES)]
    return registry, app, fleet


def migrate(bench: Bench) -> None:
    done = subprocess.run(
        [procs.STK_BRIDGE, "migrate"],
        env=bench.bridge_env(),
        cwd=bench.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: stk-bridge migrate failed:\n{done.stderr[-3000:]}")


def _expect(answer: tuple[int, Any, float], status: int, what: str) -> Any:
    code, data, _ = answer
    if code != status:
        raise RuntimeError(f"{what}: expected {status}, got {code}: {data}")
    return data


# Dummy store keys for S8: signing needs keys, never a reachable store.
STORE_SECRET = '{"accessKeyId": "AKIDBENCH", "secretAccessKey": "bench-secret-0123456789abcdef"}'


def register_project(
    bench: Bench, client: Client, project: str, url: str | None = None, pooler: str = "none"
) -> tuple[str, str]:
    """Project, `main` connection (checked by the server; the bench database unless `url`, with
    the pooler in front of it: `docs/poolers.md`), published release, the storage secret, API
    key: (API key, its key id)."""
    admin = bench.admin()
    base = f"/admin/v1/projects/{project}"
    _expect(client.request("POST", "/admin/v1/projects", {"id": project}, admin), 201, "create")
    conn = {"url": url or bench.pg.url(bench.app_db), "pooler": pooler}
    _expect(client.request("PUT", f"{base}/envs/{ENV}/connections/main", conn, admin), 200, "conn")
    files = {"files": bench.files}
    _expect(client.request("POST", f"{base}/envs/{ENV}/releases", files, admin), 201, "publish")
    secret = {"value": STORE_SECRET}
    _expect(client.request("PUT", f"{base}/envs/{ENV}/secrets/BENCH_S3", secret, admin), 200, "s3")
    key = {"name": "bench", "roles": ["writer"]}
    data = _expect(client.request("POST", f"{base}/envs/{ENV}/api-keys", key, admin), 201, "key")
    return str(data["apiKey"]), str(data["keyId"])


def _error(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return f"{data['error'].get('code')} {data['error'].get('message')!r}"
    return repr(data)[:200]


def end_user(bench: Bench, client: Client, project: str = "bench") -> tuple[str, str] | str:
    """(access token, user id) of a signed-up user with notes, or why S2 cannot run yet."""
    headers = {"Host": host(project)}
    status, data, _ = client.request("POST", "/auth/signup", USER, headers)
    if status not in (200, 201, 409):
        return f"POST /auth/signup answered {status} {_error(data)}"
    status, data, _ = client.request("POST", "/auth/login", USER, headers)
    user = data.get("user") if isinstance(data, dict) else None
    if status != 200 or "access_token" not in data or not isinstance(user, dict):
        return f"POST /auth/login answered {status} {_error(data)}"
    token, sub = str(data["access_token"]), str(user["id"])
    rows = (
        "INSERT INTO notes (id, owner_id, title, pinned, created_at) "
        "SELECT 'u' || lpad(i::text, 25, '0'), $1, 'mine ' || i, i % 4 = 0, "
        "timestamptz '2024-06-01' + i * interval '1 minute' "
        f"FROM generate_series(1, {USER_NOTES}) AS i ON CONFLICT (id) DO NOTHING"
    )
    asyncio.run(bench.pg.execute(bench.app_db, rows, sub))
    return token, sub


def route_answers(
    bench: Bench, client: Client, body: dict[str, Any], headers: dict[str, str]
) -> tuple[list[str] | None, str | None]:
    """(statements of one warm request, None) when the route answers 200, else (None, why).

    The first request fills the caches; the second one, whose statements (on every database:
    registry included) are read from the server log, shows what the hot path runs.
    """
    status, data, _ = client.request("POST", "/call", body, headers)
    if status != 200:
        return None, f"{body['path']} answered {status} {_error(data)}"

    async def call() -> None:
        await asyncio.to_thread(client.request, "POST", "/call", body, headers)

    return asyncio.run(bench.pg.capture(call)), None
