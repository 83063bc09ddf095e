"""Register a demo tenant through the real admin API (shared by integration tests)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tenancy.releases.compile.compiler import load_project_dir

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "demo"


async def demo_tenant(bridge: Any, project: str, *, roles: tuple[str, ...] = ("admin",)) -> str:
    """Project + seeded SQLite DB + published example + an API key; returns the key."""
    admin = bridge.admin()
    client = bridge.client
    response = await client.post("/admin/v1/projects", json={"id": project}, headers=admin)
    assert response.status_code == 201, response.text
    database = bridge.data_dir / f"{project}.db"
    with sqlite3.connect(database) as db:
        db.executescript((EXAMPLE / "seed" / "sqlite.sql").read_text())
    response = await client.put(
        f"/admin/v1/projects/{project}/envs/prod/connections/main",
        json={"url": f"sqlite:///{database}"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        f"/admin/v1/projects/{project}/envs/prod/releases",
        json={"files": load_project_dir(EXAMPLE)},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        f"/admin/v1/projects/{project}/envs/prod/api-keys",
        json={"name": "test", "roles": list(roles)},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["apiKey"])
