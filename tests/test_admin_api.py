"""The admin API (`docs/admin.md`) over HTTP, on a SQLite and a PostgreSQL registry where it
matters.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import pkgutil
import re
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from bridge.routes import admin as admin_package
from tenancy.registry.models import ApiKey, Secret

from support.bridge import ADMIN_TOKEN, Bridge, running_bridge
from support.world import demo_files, seeded_sqlite

ROOT = Path(__file__).resolve().parent.parent
DEMO = demo_files()
ACTOR = "admin:" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:8]
SHOP = {"Host": "shop.api.example.com"}
STATS = {"path": "logics/public/stats"}
A = "/admin/v1"


async def error(b: Bridge, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
    r = await b.admin(method, path, status, **kwargs)
    err: dict[str, Any] = r.json()["error"]
    assert err["requestId"] == r.headers["x-request-id"]
    return err


async def shop_with_demo(b: Bridge, tmp_path: Path, **project: Any) -> str:
    """Project `shop` (envs prod, dev) on a seeded SQLite tenant, demo published to prod."""
    await b.admin_json(
        "POST", "/projects", 201, json={"id": "shop", "envs": ["prod", "dev"], **project}
    )
    url = seeded_sqlite(tmp_path / "tenant.db")
    for env in ("prod", "dev"):
        await b.admin_json("PUT", f"/projects/shop/envs/{env}/connections/main", json={"url": url})
    published = await b.admin_json(
        "POST", "/projects/shop/envs/prod/releases", 201, json={"files": DEMO}
    )
    return str(published["release"])


async def audit_items(b: Bridge, **params: Any) -> list[dict[str, Any]]:
    body = await b.admin_json("GET", "/audit", params={"limit": 500, **params})
    assert body["nextCursor"] is None
    items: list[dict[str, Any]] = body["items"]
    return items


# --- projects -----------------------------------------------------------------------------------


async def test_project_create_get_patch_delete(registry_url: str, tmp_path: Path) -> None:
    async with running_bridge(tmp_path, registry_url) as b:
        created = await b.admin_json(
            "POST",
            "/projects",
            201,
            json={"id": "shop", "envs": ["prod", "dev"], "hosts": ["Shop.Example.org."]},
        )
        assert created["id"] == "shop" and created["status"] == "active"
        assert created["envs"] == ["dev", "prod"] and created["defaultEnv"] == "prod"
        assert created["hosts"] == ["shop.example.org"] and created["limits"] == {}
        for field in ("createdAt", "updatedAt"):
            assert datetime.fromisoformat(created[field]).tzinfo is not None
        assert await b.admin_json("GET", "/projects/shop") == created

        defaults = await b.admin_json("POST", "/projects", 201, json={"id": "blog"})
        assert defaults["envs"] == ["prod"] and defaults["defaultEnv"] == "prod"
        assert defaults["hosts"] == []

        await error(b, "POST", "/projects", 409, json={"id": "shop"})
        for bad in (
            {"id": "Shop"},
            {"id": "s"},
            {"id": "shop-"},
            {"id": "new", "envs": ["Prod"]},
            {"id": "new", "envs": ["prod", "prod"]},
            {"id": "new", "envs": ["prod"], "defaultEnv": "dev"},
            {"id": "new", "hosts": ["not a host"]},
            {"id": "new", "hosts": ["a.example.org", "A.example.org"]},
            {"id": "new", "unknown": 1},
            {"id": 5},
        ):
            await error(b, "POST", "/projects", 400, json=bad)
        await error(b, "GET", "/projects/new", 404)
        await error(b, "GET", "/projects/Not_An_Id", 404)

        patched = await b.admin_json(
            "PATCH",
            "/projects/shop",
            json={
                "status": "disabled",
                "defaultEnv": "dev",
                "hosts": ["shop.example.net"],
                "limits": {"maxPoolSize": 2, "requestsPerMinute": 600},
            },
        )
        assert patched["status"] == "disabled" and patched["defaultEnv"] == "dev"
        assert patched["hosts"] == ["shop.example.net"]
        assert patched["limits"] == {"maxPoolSize": 2, "requestsPerMinute": 600}
        assert patched["createdAt"] == created["createdAt"]
        assert patched["updatedAt"] > created["updatedAt"]
        assert await b.admin_json("GET", "/projects/shop") == patched

        # Only the fields sent change.
        again = await b.admin_json("PATCH", "/projects/shop", json={"status": "active"})
        assert again["defaultEnv"] == "dev" and again["limits"] == patched["limits"]
        assert again["hosts"] == ["shop.example.net"]

        for bad in (
            {"status": "paused"},
            {"defaultEnv": "staging"},
            {"hosts": ["bad host"]},
            {"limits": {"maxPoolSize": 0}},
            {"limits": {"maxPoolSize": "5"}},
            {"limits": {"maxPoolSize": True}},
            {"limits": {"poolSize": 5}},
            {"status": None},
            {"id": "other"},
        ):
            await error(b, "PATCH", "/projects/shop", 400, json=bad)
        assert await b.admin_json("GET", "/projects/shop") == again
        await error(b, "PATCH", "/projects/nope", 404, json={"status": "active"})

        assert await b.admin_json("DELETE", "/projects/shop", 204) is None
        await error(b, "GET", "/projects/shop", 404)
        await error(b, "DELETE", "/projects/shop", 404)
        listed = await b.admin_json("GET", "/projects")
        assert [p["id"] for p in listed["items"]] == ["blog"]
        # The id and its host are free again.
        await b.admin_json(
            "POST", "/projects", 201, json={"id": "shop", "hosts": ["shop.example.net"]}
        )


async def test_project_settings_apply_to_calls(bridge: Bridge, tmp_path: Path) -> None:
    b = bridge
    release = await shop_with_demo(b, tmp_path)
    r = await b.client.post("/call", json=STATS, headers=SHOP)
    assert r.status_code == 200, r.text

    await b.admin_json("PATCH", "/projects/shop", json={"status": "disabled"})
    assert (await b.client.post("/call", json=STATS, headers=SHOP)).status_code == 404
    await b.admin_json("PATCH", "/projects/shop", json={"status": "active"})
    assert (await b.client.post("/call", json=STATS, headers=SHOP)).status_code == 200

    custom = {"Host": "notes.example.org"}
    assert (await b.client.post("/call", json=STATS, headers=custom)).status_code == 400
    await b.admin_json("PATCH", "/projects/shop", json={"hosts": ["notes.example.org"]})
    assert (await b.client.post("/call", json=STATS, headers=custom)).status_code == 200

    await b.admin_json("PATCH", "/projects/shop", json={"limits": {"maxPoolSize": 2}})
    assert (await b.client.post("/call", json=STATS, headers=SHOP)).status_code == 200
    status = await b.admin_json("GET", "/projects/shop/status")
    assert status["envs"]["prod"]["release"] == release
    assert status["envs"]["prod"]["releaseCached"] is True
    assert [p["max_size"] for p in status["envs"]["prod"]["pools"]] == [2]
    assert status["envs"]["dev"]["release"] is None and status["envs"]["dev"]["pools"] == []

    # The default env serves calls that name none; dev has no release yet.
    await b.admin_json("PATCH", "/projects/shop", json={"defaultEnv": "dev"})
    r = await b.client.post("/call", json=STATS, headers=SHOP)
    assert r.status_code == 404 and "release" in r.json()["error"]["message"]


async def test_hosts_belong_to_one_project(registry_url: str, tmp_path: Path) -> None:
    async with running_bridge(tmp_path, registry_url) as b:
        await b.admin_json(
            "POST", "/projects", 201, json={"id": "shop", "hosts": ["shop.example.org"]}
        )
        await error(b, "POST", "/projects", 409, json={"id": "blog", "hosts": ["SHOP.example.org"]})
        await error(b, "GET", "/projects/blog", 404)  # nothing half-created
        await b.admin_json(
            "POST", "/projects", 201, json={"id": "blog", "hosts": ["blog.example.org"]}
        )
        await error(
            b,
            "PATCH",
            "/projects/blog",
            409,
            json={"hosts": ["blog.example.org", "shop.example.org"]},
        )
        assert (await b.admin_json("GET", "/projects/blog"))["hosts"] == ["blog.example.org"]
        assert (await b.admin_json("GET", "/projects/shop"))["hosts"] == ["shop.example.org"]
        # A project may re-send its own hosts.
        await b.admin_json(
            "PATCH", "/projects/shop", json={"hosts": ["shop.example.org", "x.example.org"]}
        )
        await b.admin_json("PATCH", "/projects/shop", json={"hosts": []})
        await b.admin_json("PATCH", "/projects/blog", json={"hosts": ["shop.example.org"]})


async def test_concurrent_creates_conflict_cleanly(registry_url: str, tmp_path: Path) -> None:
    """Racing creates of one id, or of one host, give one 201 and 409s (never a 500)."""
    async with running_bridge(tmp_path, registry_url) as b:
        same_id = await asyncio.gather(
            *(b.admin("POST", "/projects", json={"id": "shop"}) for _ in range(6))
        )
        assert sorted(r.status_code for r in same_id) == [201] + [409] * 5
        same_host = await asyncio.gather(
            *(
                b.admin("POST", "/projects", json={"id": f"p{i}x", "hosts": ["h.example.org"]})
                for i in range(6)
            )
        )
        assert sorted(r.status_code for r in same_host) == [201] + [409] * 5
        listed = await b.admin_json("GET", "/projects")
        assert len(listed["items"]) == 2
        creates = await audit_items(b, action="project.create")
        assert len(creates) == 2


async def test_project_list_pagination(registry_url: str, tmp_path: Path) -> None:
    ids = ["delta", "alpha", "echo", "charlie", "bravo"]
    async with running_bridge(tmp_path, registry_url) as b:
        assert await b.admin_json("GET", "/projects") == {"items": [], "nextCursor": None}
        for pid in ids:
            await b.admin_json("POST", "/projects", 201, json={"id": pid})
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            body = await b.admin_json("GET", "/projects", params=params)
            assert len(body["items"]) <= 2
            assert all(set(p) >= {"id", "status", "envs", "defaultEnv"} for p in body["items"])
            seen += [p["id"] for p in body["items"]]
            pages += 1
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert seen == sorted(ids) and pages == 3
        body = await b.admin_json("GET", "/projects", params={"limit": 5})
        assert [p["id"] for p in body["items"]] == sorted(ids) and body["nextCursor"] is None
        default = await b.admin_json("GET", "/projects")
        assert len(default["items"]) == 5
        for limit in (0, 501, "x"):
            await error(b, "GET", "/projects", 400, params={"limit": limit})


# --- envs ---------------------------------------------------------------------------------------


async def test_envs_create_delete(registry_url: str, tmp_path: Path) -> None:
    async with running_bridge(tmp_path, registry_url) as b:
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        created = await b.admin_json("POST", "/projects/shop/envs", 201, json={"id": "staging"})
        assert created["id"] == "staging"
        await error(b, "POST", "/projects/shop/envs", 409, json={"id": "staging"})
        await error(b, "POST", "/projects/shop/envs", 400, json={"id": "Staging"})
        await error(b, "POST", "/projects/nope/envs", 404, json={"id": "dev"})
        assert (await b.admin_json("GET", "/projects/shop"))["envs"] == ["prod", "staging"]

        await b.admin_json("PUT", "/projects/shop/envs/staging/secrets/TOKEN", json={"value": "x"})
        await error(b, "DELETE", "/projects/shop/envs/prod", 409)
        await error(b, "DELETE", "/projects/shop/envs/dev", 404)
        await b.admin_json("DELETE", "/projects/shop/envs/staging", 204)
        assert (await b.admin_json("GET", "/projects/shop"))["envs"] == ["prod"]
        await error(b, "GET", "/projects/shop/envs/staging/secrets", 404)
        async with b.rt.sessions() as session:
            left = (await session.scalars(select(Secret).where(Secret.env == "staging"))).all()
        assert left == []
        # Re-created, the env starts empty.
        await b.admin_json("POST", "/projects/shop/envs", 201, json={"id": "staging"})
        assert (await b.admin_json("GET", "/projects/shop/envs/staging/secrets"))["items"] == []


# --- connections and secrets ---------------------------------------------------------------------


@asynccontextmanager
async def password_rejecting_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """Speaks just enough of the PostgreSQL protocol to refuse any password (SQLSTATE 28P01).

    The test server trusts every local connection, so this is the only way to see a real
    "wrong password" answer reach the driver.
    """
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!i", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if body[:4] == struct.pack("!i", 80877103):  # SSLRequest
                    writer.write(b"N")
                    continue
                break
            writer.write(b"R" + struct.pack("!ii", 8, 3))  # cleartext password, please
            await writer.drain()
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            received.append(kind + await reader.readexactly(length - 4))
            fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0"
            writer.write(b"E" + struct.pack("!i", len(fields) + 4) + fields)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, received
    finally:
        server.close()
        await server.wait_closed()


async def test_connections_verify_and_stay_write_only(
    bridge: Bridge, pg_url: str, tmp_path: Path
) -> None:
    b = bridge
    base = "/projects/shop/envs/prod/connections"
    await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
    password = "pw-" + uuid.uuid4().hex
    role = "stk_role_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        host_db = pg_url.split("@", 1)[1]
        good = f"postgresql://{role}:{password}@{host_db}"
        first = await b.admin_json("PUT", f"{base}/main", json={"url": good})
        assert set(first) == {"alias", "engine", "pooler", "version", "updatedAt"}
        assert first["alias"] == "main" and first["engine"] == "postgresql"
        assert first["version"] == 1 and first["pooler"] == "none"
        # A pooler mode also works on a direct connection (it only costs more round trips).
        body = {"url": good, "pooler": "transaction"}
        second = await b.admin_json("PUT", f"{base}/main", json=body)
        assert second["version"] == 2 and second["pooler"] == "transaction"

        server, _, dbname = host_db.rpartition("/")
        async with password_rejecting_server() as (port, received):
            wrong_password = f"postgresql://{role}:{password}@127.0.0.1:{port}/{dbname}"
            failures = {
                "authentication failed": wrong_password,
                "could not be reached": f"postgresql://{role}:{password}@127.0.0.1:1/{dbname}",
                "database does not exist": (
                    f"postgresql://{role}:{password}@{server}/stk_missing_{uuid.uuid4().hex[:8]}"
                ),
            }
            unknown_role = f"postgresql://nobody_{role}:{password}@{host_db}"
            cases = [*failures.items(), ("authentication failed", unknown_role)]
            # Passwords that break URL parsing must not leak a fragment through a host name.
            cases += [
                ("", f"postgresql://{role}:{password}{c}{password}@127.0.0.1:1/{dbname}")
                for c in "/#?@:[ "
            ]
            for reason, url in cases:
                r = await b.admin("PUT", f"{base}/replica", json={"url": url})
                assert r.status_code == 400, r.text
                message = r.json()["error"]["message"]
                assert reason in message
                for leak in (password, url, "postgresql://", f"{role}:"):
                    assert leak not in r.text
            assert received and all(password.encode() in msg for msg in received)
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.close()

    await error(b, "PUT", f"{base}/replica", 400, json={"url": "mysql://u:p@h/db"})
    await error(b, "PUT", f"{base}/Bad-Alias", 400, json={"url": good})
    await error(b, "PUT", f"{base}/replica", 400, json={"url": f"sqlite:///{tmp_path}/none.db"})
    await error(b, "PUT", f"{base}/replica", 400, json={"url": good, "pooler": "statement"})
    sqlite_url = seeded_sqlite(tmp_path / "t.db")
    r = await b.admin("PUT", f"{base}/local", json={"url": sqlite_url, "pooler": "session"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "A pooler applies to PostgreSQL connections only"
    await error(b, "PUT", "/projects/shop/envs/dev/connections/main", 404, json={"url": good})
    # Nothing failed half-way: still one connection.
    listed = await b.admin_json("GET", base)
    assert [c["alias"] for c in listed["items"]] == ["main"]

    # verify=false stores an unreachable URL as is.
    unreachable = f"postgresql://{role}:{password}@127.0.0.1:1/nowhere"
    skipped = await b.admin_json(
        "PUT", f"{base}/replica", params={"verify": "false"}, json={"url": unreachable}
    )
    assert skipped == {**skipped, "alias": "replica", "engine": "postgresql", "version": 1}
    sqlite_conn = await b.admin_json("PUT", f"{base}/local", json={"url": sqlite_url})
    assert sqlite_conn["engine"] == "sqlite"

    r = await b.admin("GET", base)
    assert [c["alias"] for c in r.json()["items"]] == ["local", "main", "replica"]
    for item in r.json()["items"]:
        assert set(item) == {"alias", "engine", "pooler", "version", "updatedAt"}
    assert [c["pooler"] for c in r.json()["items"]] == ["none", "transaction", "none"]
    for leak in (password, "postgresql://", "sqlite://", "v2."):
        assert leak not in r.text
    page = await b.admin_json("GET", base, params={"limit": 2})
    assert len(page["items"]) == 2 and page["nextCursor"]
    rest = await b.admin_json("GET", base, params={"limit": 2, "cursor": page["nextCursor"]})
    assert [c["alias"] for c in rest["items"]] == ["replica"] and rest["nextCursor"] is None

    # Stored sealed; the vault opens it back to the exact URL.
    async with b.rt.sessions() as session:
        row = await session.get(Secret, ("shop", "prod", "connection", "main"))
        assert row is not None and row.ciphertext.startswith("v2.")
        assert password not in row.ciphertext
        assert (await b.rt.vault.open(session, row)).decode() == good

    await b.admin_json("DELETE", f"{base}/replica", 204)
    await error(b, "DELETE", f"{base}/replica", 404)
    assert [c["alias"] for c in (await b.admin_json("GET", base))["items"]] == ["local", "main"]


async def test_secrets_are_write_only(bridge: Bridge) -> None:
    b = bridge
    base = "/projects/shop/envs/prod/secrets"
    await b.admin_json("POST", "/projects", 201, json={"id": "shop", "envs": ["prod", "dev"]})
    value = "sk_live_" + uuid.uuid4().hex
    r = await b.admin("PUT", f"{base}/STRIPE_KEY", json={"value": value})
    assert r.status_code == 200 and value not in r.text
    assert set(r.json()) == {"name", "version", "updatedAt"} and r.json()["version"] == 1
    assert (await b.admin_json("PUT", f"{base}/STRIPE_KEY", json={"value": value + "2"}))[
        "version"
    ] == 2
    await b.admin_json("PUT", f"{base}/MAIL_TOKEN", json={"value": "mail-" + value})
    await b.admin_json("PUT", "/projects/shop/envs/dev/secrets/STRIPE_KEY", json={"value": "dev"})

    r = await b.admin("GET", base)
    assert r.status_code == 200
    assert [(s["name"], s["version"]) for s in r.json()["items"]] == [
        ("MAIL_TOKEN", 1),
        ("STRIPE_KEY", 2),
    ]
    assert all(set(s) == {"name", "version", "updatedAt"} for s in r.json()["items"])
    assert value not in r.text and "v2." not in r.text

    for bad_name in ("9LIVES", "has-dash", "x" * 65):
        await error(b, "PUT", f"{base}/{bad_name}", 400, json={"value": "v"})
    await error(b, "PUT", f"{base}/OK", 400, json={"value": 5})
    await error(b, "PUT", f"{base}/OK", 400, json={})
    await error(b, "PUT", "/projects/shop/envs/qa/secrets/OK", 404, json={"value": "v"})

    async with b.rt.sessions() as session:
        row = await session.get(Secret, ("shop", "prod", "secret", "STRIPE_KEY"))
        assert row is not None and value not in row.ciphertext
        assert (await b.rt.vault.open(session, row)).decode() == value + "2"

    await b.admin_json("DELETE", f"{base}/STRIPE_KEY", 204)
    await error(b, "DELETE", f"{base}/STRIPE_KEY", 404)
    assert [s["name"] for s in (await b.admin_json("GET", base))["items"]] == ["MAIL_TOKEN"]
    dev = await b.admin_json("GET", "/projects/shop/envs/dev/secrets")
    assert [s["name"] for s in dev["items"]] == ["STRIPE_KEY"]


# --- releases -----------------------------------------------------------------------------------


BROKEN = {
    "schema/app.yaml": "tables:\n  notes:\n    columns:\n      title: {type: strnig}\n",
    "config/permissions.yaml": "tables:\n  ghosts:\n    select: {roles: [public]}\n",
    "logics/bad.sql": "---\nparams:\n  x: {type: int}\nunknown: 1\n---\nSELECT :y\n",
    "logics/unclosed.sql": "---\nauth: public\nSELECT 1\n",
    "notes.txt": "stray file",
}


async def test_publish_history_rollback_promote(registry_url: str, tmp_path: Path) -> None:
    async with running_bridge(tmp_path, registry_url) as b:
        base = "/projects/shop/envs/prod/releases"
        await b.admin_json(
            "POST", "/projects", 201, json={"id": "shop", "envs": ["prod", "dev", "qa"]}
        )
        # The demo needs the `main` connection: unknown aliases are publish errors.
        err = await error(b, "POST", base, 400, json={"files": DEMO})
        assert any("main" in d["message"] for d in err["details"])
        await b.admin_json(
            "PUT",
            "/projects/shop/envs/prod/connections/main",
            json={"url": seeded_sqlite(tmp_path / "t.db")},
        )
        assert await b.admin_json("GET", base) == {"items": [], "nextCursor": None}
        await error(b, "GET", f"{base}/current", 404)

        dry = await b.admin_json("POST", base, 201, json={"files": DEMO, "dryRun": True})
        assert dry["dryRun"] is True and dry["reused"] is False
        assert (await b.admin_json("GET", base))["items"] == []

        first = await b.admin_json("POST", base, 201, json={"files": DEMO, "ref": "abc123"})
        assert first == {"release": dry["release"], "reused": False, "ddl": [], "dryRun": False}
        audit_before = len(await audit_items(b))
        received_before = b.rt.bus.received
        again = await b.admin_json("POST", base, 201, json={"files": DEMO, "ref": "abc123"})
        assert again["release"] == first["release"] and again["reused"] is True
        assert len(await audit_items(b)) == audit_before
        assert b.rt.bus.received == received_before

        changed = dict(DEMO)
        changed["logics/public/stats.sql"] = DEMO["logics/public/stats.sql"].replace(
            "Totals", "All totals"
        )
        second = await b.admin_json("POST", base, 201, json={"files": changed, "ref": "def456"})
        assert second["release"] != first["release"] and second["reused"] is False

        history = (await b.admin_json("GET", base))["items"]
        assert [(h["release"], h["ref"], h["current"]) for h in history] == [
            (second["release"], "def456", True),
            (first["release"], "abc123", False),
        ]
        assert history[0]["publishedAt"] >= history[1]["publishedAt"]
        page = await b.admin_json("GET", base, params={"limit": 1})
        assert page["items"] == history[:1] and page["nextCursor"]
        current = await b.admin_json("GET", f"{base}/current")
        assert current["release"] == second["release"]
        assert "All totals" in str(current["compiled"]) and "sqlite://" not in str(current)
        r = await b.client.post("/call", json=STATS, headers=SHOP)
        assert r.status_code == 200, r.text

        rolled = await b.admin_json("POST", f"{base}/rollback", json={"release": first["release"]})
        assert rolled == {"release": first["release"]}
        history = (await b.admin_json("GET", base))["items"]
        assert [h["release"] for h in history if h["current"]] == [first["release"]]
        assert (await b.admin_json("GET", f"{base}/current"))["release"] == first["release"]
        await error(b, "POST", f"{base}/rollback", 404, json={"release": "0" * 64})
        await error(
            b,
            "POST",
            "/projects/shop/envs/dev/releases/rollback",
            404,
            json={"release": first["release"]},
        )

        promoted = await b.admin_json(
            "POST", "/projects/shop/promote", json={"from": "prod", "to": "dev"}
        )
        assert promoted == {"release": first["release"]}
        dev = await b.admin_json("GET", "/projects/shop/envs/dev/releases/current")
        assert dev["release"] == first["release"]
        await error(b, "POST", "/projects/shop/promote", 404, json={"from": "qa", "to": "dev"})
        await error(b, "POST", "/projects/shop/promote", 404, json={"from": "prod", "to": "nope"})
        await error(b, "POST", "/projects/nope/promote", 404, json={"from": "prod", "to": "dev"})
        await error(b, "POST", "/projects/shop/promote", 400, json={"source": "prod", "to": "dev"})
        await error(b, "POST", "/projects/shop/envs/nope/releases", 404, json={"files": DEMO})


async def test_broken_publish_lists_every_problem(bridge: Bridge) -> None:
    b = bridge
    await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
    err = await error(b, "POST", "/projects/shop/envs/prod/releases", 400, json={"files": BROKEN})
    details = err["details"]
    assert err["code"] == "BAD_REQUEST" and len(details) >= len(BROKEN)
    assert all(set(d) <= {"file", "line", "message"} and d["message"] for d in details)
    assert {d["file"] for d in details} >= set(BROKEN)
    located = {(d["file"], d.get("line")) for d in details}
    assert located >= {
        ("schema/app.yaml", 4),  # the misspelt type
        ("config/permissions.yaml", 2),  # the unknown table
        ("logics/bad.sql", 4),  # the unknown front-matter key
        ("logics/bad.sql", 6),  # the undeclared parameter
        ("logics/unclosed.sql", 1),
        ("notes.txt", None),
    }
    # Nothing was stored.
    assert await b.admin_json("GET", "/projects/shop/envs/prod/releases") == {
        "items": [],
        "nextCursor": None,
    }
    assert await b.rt.kv.keys("bundle:shop:") == []
    await error(b, "POST", "/projects/shop/envs/prod/releases", 400, json={"files": {}})
    await error(b, "POST", "/projects/shop/envs/prod/releases", 400, json={"files": []})


# --- API keys and master keys --------------------------------------------------------------------


async def test_api_keys(bridge: Bridge, tmp_path: Path) -> None:
    b = bridge
    base = "/projects/shop/envs/prod/api-keys"
    await shop_with_demo(b, tmp_path)
    created = await b.admin_json(
        "POST", base, 201, json={"name": "ci", "roles": ["writer", "admin"]}
    )
    assert set(created) == {"keyId", "apiKey", "name", "roles", "createdAt"}
    assert created["roles"] == ["admin", "writer"] and created["name"] == "ci"
    api_key = created["apiKey"]
    assert api_key.startswith(f"stk_{created['keyId']}.") and len(created["keyId"]) == 16
    other = await b.admin_json("POST", base, 201, json={"name": "backup"})
    assert other["roles"] == [] and other["apiKey"] != api_key

    r = await b.admin("GET", base)
    assert api_key.split(".")[1] not in r.text and "apiKey" not in r.text
    listed = r.json()["items"]
    assert [(k["keyId"], k["status"], k["lastUsedAt"]) for k in listed] == [
        (created["keyId"], "active", None),
        (other["keyId"], "active", None),
    ]
    assert set(listed[0]) == {"keyId", "name", "roles", "status", "createdAt", "lastUsedAt"}
    async with b.rt.sessions() as session:
        row = await session.get(ApiKey, created["keyId"])
        assert row is not None and api_key.split(".")[1] not in row.secret_hash

    keyed = {"X-Santokit-Api-Key": api_key}
    r = await b.client.post("/call", json={"path": "logics/admin/activity"}, headers=keyed)
    assert r.status_code == 200, r.text
    for _ in range(100):  # lastUsedAt is written off the request path
        used = (await b.admin_json("GET", base))["items"][0]["lastUsedAt"]
        if used:
            break
        await asyncio.sleep(0.02)
    assert used is not None

    await b.admin_json("DELETE", f"{base}/{created['keyId']}", 204)
    r = await b.client.post("/call", json=STATS, headers=keyed)
    assert r.status_code == 401
    statuses = [k["status"] for k in (await b.admin_json("GET", base))["items"]]
    assert statuses == ["revoked", "active"]
    r = await b.client.post("/call", json=STATS, headers={"X-Santokit-Api-Key": other["apiKey"]})
    assert r.status_code == 200

    await error(b, "DELETE", f"{base}/{created['keyId']}x", 404)
    await error(b, "DELETE", f"/projects/shop/envs/dev/api-keys/{other['keyId']}", 404)
    for bad in ({"name": ""}, {"name": "x", "roles": ["bad role"]}, {"roles": []}):
        await error(b, "POST", base, 400, json=bad)
    await error(b, "POST", "/projects/shop/envs/qa/api-keys", 404, json={"name": "x"})


async def test_keys_status(bridge: Bridge) -> None:
    b = bridge
    assert await b.admin_json("GET", "/keys/status") == {"activeKid": "test", "byKid": {"test": 0}}
    for pid in ("shop", "blog"):
        await b.admin_json("POST", "/projects", 201, json={"id": pid})
    assert await b.admin_json("GET", "/keys/status") == {"activeKid": "test", "byKid": {"test": 2}}
    # Nothing to re-wrap: every data key is under the active key already.
    assert await b.admin_json("POST", "/keys/rewrap") == {"rewrapped": 0, "byKid": {"test": 2}}
    assert await b.admin_json("POST", "/projects/shop/rotate-dek") == {"secrets": 0}
    await error(b, "POST", "/projects/nope/rotate-dek", 404)


# --- audit --------------------------------------------------------------------------------------


async def test_audit_one_entry_per_mutation(registry_url: str, tmp_path: Path) -> None:
    secret_value = "audit-secret-" + uuid.uuid4().hex
    async with running_bridge(tmp_path, registry_url) as b:
        url = seeded_sqlite(tmp_path / "t.db")
        steps: list[tuple[str, str, str, dict[str, Any], str, str | None]] = [
            ("POST", "/projects", "project.create", {"json": {"id": "shop"}}, "shop", None),
            ("POST", "/projects/shop/envs", "env.create", {"json": {"id": "dev"}}, "shop", "dev"),
            (
                "PUT",
                "/projects/shop/envs/prod/connections/main",
                "connection.set",
                {"json": {"url": url}},
                "shop",
                "prod",
            ),
            (
                "PUT",
                "/projects/shop/envs/prod/secrets/TOKEN",
                "secret.set",
                {"json": {"value": secret_value}},
                "shop",
                "prod",
            ),
            (
                "DELETE",
                "/projects/shop/envs/prod/secrets/TOKEN",
                "secret.delete",
                {},
                "shop",
                "prod",
            ),
            (
                "POST",
                "/projects/shop/envs/prod/releases",
                "release.publish",
                {"json": {"files": DEMO}},
                "shop",
                "prod",
            ),
            (
                "POST",
                "/projects/shop/envs/prod/releases/rollback",
                "release.rollback",  # to the current release: still a recorded change
                {"json": {"release": "RELEASE"}},
                "shop",
                "prod",
            ),
            (
                "POST",
                "/projects/shop/promote",
                "release.promote",
                {"json": {"from": "prod", "to": "dev"}},
                "shop",
                "dev",
            ),
            (
                "POST",
                "/projects/shop/envs/prod/api-keys",
                "apikey.create",
                {"json": {"name": "ci"}},
                "shop",
                "prod",
            ),
            (
                "DELETE",
                "/projects/shop/envs/prod/api-keys/KEY",
                "apikey.revoke",
                {},
                "shop",
                "prod",
            ),
            ("POST", "/keys/rewrap", "keys.rewrap", {}, None, None),
            ("POST", "/projects/shop/rotate-dek", "dek.rotate", {}, "shop", None),
            (
                "PATCH",
                "/projects/shop",
                "project.update",
                {"json": {"status": "disabled"}},
                "shop",
                None,
            ),
            ("DELETE", "/projects/shop/envs/dev", "env.delete", {}, "shop", "dev"),
            (
                "DELETE",
                "/projects/shop/envs/prod/connections/main",
                "connection.delete",
                {},
                "shop",
                "prod",
            ),
            ("POST", "/projects", "project.create", {"json": {"id": "blog"}}, "blog", None),
            ("DELETE", "/projects/shop", "project.delete", {}, "shop", None),
        ]
        request_ids: list[str] = []
        created: dict[str, str] = {}
        for method, path, action, kwargs, project, env in steps:
            path = path.replace("KEY", created.get("keyId", ""))
            if kwargs.get("json", {}).get("release") == "RELEASE":
                kwargs = {"json": {"release": created["release"]}}
            received = b.rt.bus.received
            r = await b.admin(method, path, **kwargs)
            assert r.status_code in (200, 201, 204), (action, r.text)
            created.update(r.json() if r.content else {})
            request_ids.append(r.headers["x-request-id"])
            newest = (await b.admin_json("GET", "/audit", params={"limit": 1}))["items"][0]
            assert newest["action"] == action
            assert newest["actor"] == ACTOR
            assert newest["requestId"] == request_ids[-1]
            assert (newest["project"], newest["env"]) == (project, env)
            assert b.rt.bus.received > received  # every change is announced

            # Failed and read-only calls record nothing.
            await error(b, "POST", "/projects/nope/envs", 404, json={"id": "qa"})
            await b.admin("GET", "/projects")

        expected = [step[2] for step in steps]
        items = await audit_items(b)
        assert [i["action"] for i in items] == list(reversed(expected))
        assert [i["requestId"] for i in items] == list(reversed(request_ids))
        assert len({i["id"] for i in items}) == len(items)
        assert all(i["actor"] == ACTOR for i in items)
        assert [i["ts"] for i in items] == sorted((i["ts"] for i in items), reverse=True)
        assert secret_value not in str(items) and url not in str(items)
        assert ADMIN_TOKEN not in str(items)

        by_action = await audit_items(b, action="project.create")
        assert [i["project"] for i in by_action] == ["blog", "shop"]
        assert [i["action"] for i in await audit_items(b, project="blog")] == ["project.create"]
        shop = await audit_items(b, project="shop")
        assert len(shop) == len(items) - 2  # all but blog's and the global rewrap
        assert await audit_items(b, project="nope") == []

        middle = items[len(items) // 2]
        since = await audit_items(b, since=middle["ts"])
        assert since and all(i["ts"] >= middle["ts"] for i in since)
        assert {i["id"] for i in items if i["ts"] >= middle["ts"]} == {i["id"] for i in since}
        assert len(await audit_items(b, since="2999-01-01T00:00:00+00:00")) == 0
        await error(b, "GET", "/audit", 400, params={"since": "yesterday"})
        await error(b, "GET", "/audit", 400, params={"since": "2024-01-01T00:00:00"})

        walked: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            body = await b.admin_json("GET", "/audit", params=params)
            assert len(body["items"]) <= 3
            walked += body["items"]
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert walked == items
        filtered = await b.admin_json("GET", "/audit", params={"project": "shop", "limit": 2})
        assert filtered["items"] == shop[:2]
        more = await b.admin_json(
            "GET",
            "/audit",
            params={"project": "shop", "limit": 2, "cursor": filtered["nextCursor"]},
        )
        assert more["items"] == shop[2:4]


# --- admin authentication -----------------------------------------------------------------------


def admin_modules() -> list[Any]:
    """Every module of `bridge.routes.admin` that defines routes."""
    names = [m.name for m in pkgutil.iter_modules(admin_package.__path__)]
    modules = [importlib.import_module(f"{admin_package.__name__}.{n}") for n in names]
    return [m for m in modules if hasattr(m, "router")]


def admin_routes() -> list[tuple[str, str]]:
    """Every admin route as (method, concrete path)."""
    return [
        (method, A + re.sub(r"\{[a-z_]+\}", "shop", route.path))
        for module in admin_modules()
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods)
    ]


@pytest.mark.parametrize("token", [None, ADMIN_TOKEN, "short"])
async def test_admin_api_disabled_without_tokens(tmp_path: Path, token: str | None) -> None:
    async with running_bridge(tmp_path, admin_tokens=[]) as b:
        c = b.client
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        routes = admin_routes()
        assert len(routes) >= 26
        for method, path in routes:
            r = await c.request(method, path, headers=headers, json={})
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "NOT_FOUND"
        assert (await c.get("/healthz")).status_code == 200


async def test_wrong_or_missing_admin_token_is_401(tmp_path: Path) -> None:
    second = "second-admin-token-" + uuid.uuid4().hex
    async with running_bridge(tmp_path, admin_tokens=[ADMIN_TOKEN, second]) as b:
        c = b.client
        for headers in (
            {},
            {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
            {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
            {"Authorization": f"Basic {ADMIN_TOKEN}"},
            {"Authorization": ADMIN_TOKEN},
            {"Authorization": "Bearer "},
            {"X-Admin-Token": ADMIN_TOKEN},
        ):
            for method, path in admin_routes():
                r = await c.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["error"]["code"] == "UNAUTHORIZED"
                assert ADMIN_TOKEN not in r.text
        # Either configured token works; the audit log tells them apart.
        for token in (ADMIN_TOKEN, second):
            pid = "p" + hashlib.sha256(token.encode()).hexdigest()[:6]
            r = await c.post(
                f"{A}/projects", json={"id": pid}, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 201
        r = await c.get(f"{A}/audit", headers={"Authorization": f"bearer {second}"})
        actors = [i["actor"] for i in r.json()["items"]]
        assert actors == [
            "admin:" + hashlib.sha256(second.encode()).hexdigest()[:8],
            ACTOR,
        ]
