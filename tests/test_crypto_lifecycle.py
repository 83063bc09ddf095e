"""Keys and ciphertexts over their whole life (`docs/security.md`; `docs/tenancy.md` I4, I5, I6).

Everything goes through the admin API and real `/call` traffic on a real PostgreSQL tenant
database; master-key rotation runs several apps, one after another, on the same registry and KV.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import select, update

from bridge import logs
from bridge.logs import REQUEST_FIELDS, make_handler
from tenancy.audit import Actor
from tenancy.control import secrets as control_secrets
from tenancy.keyring import Keyring
from tenancy.registry.models import ApiKey, DataKey, Env, ProjectHost, Secret
from tenancy.vault import VaultError

from support.bridge import ADMIN_TOKEN, Bridge, running_bridge
from support.world import World, demo_files, host, seed_postgresql, seeded_sqlite

DEMO = demo_files()
STATS = {"path": "logics/public/stats"}
A = "/admin/v1"


def bridge_on(
    data_dir: Path, keys: str, registry_url: str | None = None
) -> AbstractAsyncContextManager[Bridge]:
    """An app with the given keyring on a shared registry and `file://` KV (one per data dir)."""
    return running_bridge(data_dir, registry_url, kv_url=f"file://{data_dir}/kv", master_keys=keys)


@pytest.fixture
async def pg_tenant(pg_url: str) -> str:
    """The demo schema and rows in a fresh PostgreSQL database."""
    return await seed_postgresql(pg_url)


async def make_tenant(b: Bridge, project: str, url: str, secret: str) -> dict[str, str]:
    """A project with connection `main`, secret STRIPE_KEY, the demo published, one API key."""
    world = World(b)
    await world.project(project)
    await world.connect(project, "prod", url)
    path = f"/projects/{project}/envs/prod/secrets/STRIPE_KEY"
    await b.admin("PUT", path, 200, json={"value": secret})
    release = await world.publish(project, "prod", DEMO)
    key = await world.api_key(project, "prod", "ci", ["admin"])
    return {"release": release, "apiKey": key, "keyId": world.key_ids["ci"]}


async def stats(b: Bridge, project: str, **headers: str) -> httpx.Response:
    return await b.client.post("/call", json=STATS, headers={**host(project), **headers})


async def assert_serves(b: Bridge, project: str) -> None:
    r = await stats(b, project)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [{"notebooks": 3, "notes": 4, "categories": 3}]


async def rows(b: Bridge, project: str) -> dict[tuple[str, str, str], str]:
    async with b.rt.sessions() as session:
        found = (await session.scalars(select(Secret).where(Secret.project == project))).all()
        return {(r.env, r.kind, r.name): r.ciphertext for r in found}


async def secret_value(b: Bridge, project: str, name: str, env: str = "prod") -> str:
    async with b.rt.sessions() as session:
        row = await session.get(Secret, (project, env, "secret", name))
        assert row is not None
        return (await b.rt.vault.open(session, row)).decode()


async def put_ciphertext(b: Bridge, key: tuple[str, str, str, str], ciphertext: str) -> None:
    project, env, kind, name = key
    async with b.rt.transaction() as session:
        await session.execute(
            update(Secret)
            .where(
                Secret.project == project,
                Secret.env == env,
                Secret.kind == kind,
                Secret.name == name,
            )
            .values(ciphertext=ciphertext)
        )


# --- (a) master-key rotation ---------------------------------------------------------------------


async def test_master_key_rotation_and_rewrap(
    registry_url: str, pg_tenant: str, tmp_path: Path
) -> None:
    old, new, newest = (Keyring.generate_entry(k) for k in ("old", "new", "k3"))
    values = {"shop": "sk-shop-" + uuid.uuid4().hex, "blog": "sk-blog-" + uuid.uuid4().hex}
    urls = {"shop": pg_tenant, "blog": seeded_sqlite(tmp_path / "blog.db")}

    async with bridge_on(tmp_path, old, registry_url) as b:
        keys = {p: await make_tenant(b, p, urls[p], values[p]) for p in ("shop", "blog")}
        for p in keys:
            await assert_serves(b, p)
        assert await b.admin_json("GET", "/keys/status") == {
            "activeKid": "old",
            "byKid": {"old": 2},
        }

    # The new key goes first; the old one still unwraps until every data key is re-wrapped.
    async with bridge_on(tmp_path, f"{new},{old}", registry_url) as b:
        assert await b.admin_json("GET", "/keys/status") == {
            "activeKid": "new",
            "byKid": {"new": 0, "old": 2},
        }
        for p in keys:
            await assert_serves(b, p)
        before = {p: await rows(b, p) for p in keys}
        rewrapped = await b.admin_json("POST", "/keys/rewrap")
        assert rewrapped == {"rewrapped": 2, "byKid": {"new": 2, "old": 0}}
        assert await b.admin_json("GET", "/keys/status") == {
            "activeKid": "new",
            "byKid": {"new": 2, "old": 0},
        }
        # Secrets are untouched by a rewrap; they still open, and calls still work.
        assert {p: await rows(b, p) for p in keys} == before
        for p in keys:
            assert await secret_value(b, p, "STRIPE_KEY") == values[p]
            await assert_serves(b, p)
        assert await b.admin_json("POST", "/keys/rewrap") == {
            "rewrapped": 0,
            "byKid": {"new": 2, "old": 0},
        }
        audit = await b.admin_json("GET", "/audit", params={"action": "keys.rewrap"})
        assert [i["detail"] for i in audit["items"]] == [{"rewrapped": 0}, {"rewrapped": 2}]

    # The old key can now be removed.
    async with bridge_on(tmp_path, new, registry_url) as b:
        for p in keys:
            await assert_serves(b, p)
            assert await secret_value(b, p, "STRIPE_KEY") == values[p]
            r = await stats(b, p, **{"X-Santokit-Api-Key": keys[p]["apiKey"]})
            assert r.status_code == 200

    # A keyring holding only the removed key cannot open anything any more, and says so.
    async with bridge_on(tmp_path, old, registry_url) as b:
        for p in keys:
            r = await stats(b, p)
            assert r.status_code == 503, r.text
            with pytest.raises(VaultError):
                await secret_value(b, p, "STRIPE_KEY")
        audit_before = await b.admin_json("GET", "/audit")
        for method, path, body in (
            ("POST", "/keys/rewrap", None),
            ("POST", "/projects/shop/rotate-dek", None),
            ("PUT", "/projects/shop/envs/prod/secrets/OTHER", {"value": "v"}),
            ("PUT", "/projects/shop/envs/prod/connections/main", {"url": urls["shop"]}),
        ):
            r = await b.admin(method, path, 503, json=body)
            assert "unknown kid 'new'" in r.json()["error"]["message"]
        assert await b.admin_json("GET", "/audit") == audit_before
        assert (await b.admin_json("GET", "/keys/status"))["byKid"] == {"old": 0, "new": 2}

    # The same rotation through the core (what `stk-bridge keys rewrap` runs).
    async with bridge_on(tmp_path, f"{newest},{new}", registry_url) as b:
        actor = Actor("admin:cli", None)
        answer = await control_secrets.rewrap(b.rt, actor)
        assert answer == {"rewrapped": 2, "byKid": {"k3": 2, "new": 0}}
        assert (await control_secrets.key_status(b.rt))["activeKid"] == "k3"
        audit = await b.admin_json("GET", "/audit", params={"action": "keys.rewrap", "limit": 1})
        assert audit["items"][0]["actor"] == "admin:cli"

    async with bridge_on(tmp_path, newest, registry_url) as b:
        for p in keys:
            await assert_serves(b, p)
            assert await secret_value(b, p, "STRIPE_KEY") == values[p]
        async with b.rt.sessions() as session:
            kids = (await session.scalars(select(DataKey.kid))).all()
        assert sorted(kids) == ["k3", "k3"]


# --- (b) data-key rotation -----------------------------------------------------------------------


async def test_rotate_dek_reencrypts_every_value(pg_tenant: str, tmp_path: Path) -> None:
    value = "sk-" + uuid.uuid4().hex
    keys = Keyring.generate_entry("k1")
    async with bridge_on(tmp_path, keys) as b:
        await make_tenant(b, "shop", pg_tenant, value)
        await make_tenant(b, "blog", seeded_sqlite(tmp_path / "blog.db"), value)
        await b.admin_json(
            "PUT", "/projects/shop/envs/prod/secrets/MAIL", json={"value": "m-" + value}
        )
        await assert_serves(b, "shop")
        before = await rows(b, "shop")
        blog_before = await rows(b, "blog")
        async with b.rt.sessions() as session:
            key_before = await session.get(DataKey, "shop")
            assert key_before is not None

        assert await b.admin_json("POST", "/projects/shop/rotate-dek") == {"secrets": 3}

        after = await rows(b, "shop")
        assert after.keys() == before.keys()
        assert all(after[k] != before[k] for k in before)
        assert await rows(b, "blog") == blog_before  # other projects untouched
        async with b.rt.sessions() as session:
            key_after = await session.get(DataKey, "shop")
            assert key_after is not None
            assert key_after.generation == key_before.generation + 1
            assert key_after.wrapped != key_before.wrapped
        assert await secret_value(b, "shop", "STRIPE_KEY") == value
        assert await secret_value(b, "shop", "MAIL") == "m-" + value
        await assert_serves(b, "shop")
        audit = await b.admin_json("GET", "/audit", params={"action": "dek.rotate"})
        assert [(i["project"], i["detail"]) for i in audit["items"]] == [("shop", {"secrets": 3})]

        # The old ciphertexts were really re-encrypted under a new key, not just re-sealed.
        await put_ciphertext(
            b, ("shop", "prod", "secret", "STRIPE_KEY"), before[("prod", "secret", "STRIPE_KEY")]
        )
        with pytest.raises(VaultError):
            await secret_value(b, "shop", "STRIPE_KEY")

    # A fresh process (empty caches) decrypts the rotated connection and serves.
    async with bridge_on(tmp_path, keys) as fresh:
        await assert_serves(fresh, "shop")


# --- (c) a ciphertext moved to another tenant ----------------------------------------------------


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """The production JSON log handler on the root logger, writing into a buffer."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


@contextmanager
def production_logging(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """The server's own set-up (`bridge.logs.configure`) at DEBUG, its JSON lines written into a
    buffer, with pytest's capture (every record) kept alongside."""
    root = logging.getLogger()
    loggers = [lg for lg in root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    caplog.handler.setLevel(logging.DEBUG)
    logs.configure("debug", "json")
    production = root.handlers[0]
    assert isinstance(production, logging.StreamHandler)
    production.setStream(stream)
    root.addHandler(caplog.handler)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for lg, lg_level, disabled in saved:
            lg.setLevel(lg_level)
            lg.disabled = disabled


def parse(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def test_moved_ciphertext_does_not_decrypt(
    pg_tenant: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge_on(tmp_path, Keyring.generate_entry("k1")) as b:
        await make_tenant(b, "shop", pg_tenant, "shop-secret")
        await make_tenant(b, "blog", seeded_sqlite(tmp_path / "blog.db"), "blog-secret")
        await b.admin_json("POST", "/projects/shop/envs", 201, json={"id": "dev"})
        await b.admin_json(
            "PUT", "/projects/shop/envs/dev/connections/main", json={"url": pg_tenant}
        )
        await b.admin_json(
            "PUT", "/projects/shop/envs/prod/connections/replica", json={"url": pg_tenant}
        )
        shop = await rows(b, "shop")
        blog = await rows(b, "blog")
        # blog's row now holds shop's sealed URL (same alias), before blog ever served a call.
        await put_ciphertext(
            b, ("blog", "prod", "connection", "main"), shop[("prod", "connection", "main")]
        )
        caplog.clear()
        with caplog.at_level(logging.INFO), json_log() as stream:
            r = await stats(b, "blog")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        errors = [line for line in parse(stream) if line["level"] == "error"]
        assert errors, "the refused ciphertext must be logged as an error"
        for line in errors:
            assert "blog" in line["msg"] and "does not decrypt" in line["msg"]
            assert (line["requestId"], line["project"], line["env"]) == (
                r.headers["x-request-id"],
                "blog",
                "prod",
            )
        assert pg_tenant not in caplog.text
        assert shop[("prod", "connection", "main")] not in caplog.text
        await assert_serves(b, "shop")  # the owner is unaffected

        # Named secrets too, and within one project: another env or another name fails as well.
        await put_ciphertext(
            b, ("blog", "prod", "secret", "STRIPE_KEY"), shop[("prod", "secret", "STRIPE_KEY")]
        )
        with pytest.raises(VaultError):
            await secret_value(b, "blog", "STRIPE_KEY")
        for target in (
            ("shop", "dev", "connection", "main"),
            ("shop", "prod", "connection", "replica"),
        ):
            await put_ciphertext(b, target, shop[("prod", "connection", "main")])
            async with b.rt.sessions() as session:
                row = await session.get(Secret, target)
                assert row is not None
                with pytest.raises(VaultError):
                    await b.rt.vault.open(session, row)

        # Putting blog's own value back restores it.
        await put_ciphertext(
            b, ("blog", "prod", "connection", "main"), blog[("prod", "connection", "main")]
        )
        b.rt.directory.invalidate("connection.set", "blog")
        await assert_serves(b, "blog")
        await assert_serves(b, "shop")


# --- (d) project deletion -----------------------------------------------------------------------


async def tenant_backends(pg_url: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'stk-bridge'"
            )
        )
    finally:
        await conn.close()


async def test_project_delete_crypto_shreds(pg_tenant: str, tmp_path: Path) -> None:
    async with bridge_on(tmp_path, Keyring.generate_entry("k1")) as b:
        shop = await make_tenant(b, "shop", pg_tenant, "shop-secret")
        await b.admin_json("PATCH", "/projects/shop", json={"hosts": ["shop.example.org"]})
        await make_tenant(b, "blog", seeded_sqlite(tmp_path / "blog.db"), "blog-secret")
        keyed = {"X-Santokit-Api-Key": shop["apiKey"]}
        r = await stats(b, "shop", **keyed)
        assert r.status_code == 200
        assert b.rt.pools.stats("shop") and await tenant_backends(pg_tenant) >= 1
        old_rows = await rows(b, "shop")
        assert await b.rt.kv.get("manifest:shop") is not None
        assert await b.rt.kv.keys("bundle:shop:")

        await b.admin_json("DELETE", "/projects/shop", 204)

        async with b.rt.sessions() as session:
            for model, column in (
                (DataKey, DataKey.project),
                (Secret, Secret.project),
                (ApiKey, ApiKey.project),
                (Env, Env.project),
                (ProjectHost, ProjectHost.project),
            ):
                left = (await session.scalars(select(model).where(column == "shop"))).all()
                assert left == [], model.__name__
        assert await b.rt.kv.get("manifest:shop") is None
        assert await b.rt.kv.keys("bundle:shop:") == []
        assert b.rt.pools.stats("shop") == []
        for _ in range(100):
            if await tenant_backends(pg_tenant) == 0:
                break
            await asyncio.sleep(0.02)
        assert await tenant_backends(pg_tenant) == 0, "the tenant's pool connections stay open"

        assert (await stats(b, "shop", **keyed)).status_code == 401
        assert (await stats(b, "shop")).status_code == 404
        r = await b.client.post("/call", json=STATS, headers={"Host": "shop.example.org"})
        # Its custom host is no longer anyone's: an unknown host names no project (400, not 404).
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "BAD_REQUEST"
        assert r.json()["error"]["message"] == "Project could not be resolved"
        assert r.json()["error"]["requestId"] == r.headers["x-request-id"]
        await assert_serves(b, "blog")
        audit = await b.admin_json("GET", "/audit", params={"project": "shop"})
        assert audit["items"][0]["action"] == "project.delete"
        assert audit["items"][-1]["action"] == "project.create"  # history outlives the project

        # A new project of the same id gets a new data key: the old ciphertexts stay sealed.
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        async with b.rt.transaction() as session:
            for (env, kind, name), ciphertext in old_rows.items():
                session.add(
                    Secret(
                        project="shop",
                        env=env,
                        kind=kind,
                        name=name,
                        ciphertext=ciphertext,
                        meta={"engine": "postgresql"} if kind == "connection" else {},
                    )
                )
        async with b.rt.sessions() as session:
            for row in (
                await session.scalars(select(Secret).where(Secret.project == "shop"))
            ).all():
                with pytest.raises(VaultError):
                    await b.rt.vault.open(session, row)
        await b.admin_json("POST", "/projects/shop/envs/prod/releases", 201, json={"files": DEMO})
        r = await stats(b, "shop")
        assert r.status_code == 503, r.text
        assert (await stats(b, "shop", **keyed)).status_code == 401


# --- (e) nothing secret in logs or admin answers --------------------------------------------------


async def test_no_secret_reaches_logs_or_admin_answers(
    pg_tenant: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-" + uuid.uuid4().hex
    role = "stk_app_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(pg_tenant)
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    await conn.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
    )
    await conn.close()
    where = pg_tenant.split("@", 1)[1]
    url = f"postgresql://{role}:{password}@{where}"
    stripe = "sk_live_" + uuid.uuid4().hex
    mail = "mail-pass-" + uuid.uuid4().hex
    wrong_token = "wrong-admin-token-" + uuid.uuid4().hex
    forged_key = "stk_" + "a" * 16 + "." + "B" * 43
    param_marker = "param-" + uuid.uuid4().hex
    keys = Keyring.generate_entry("k1")
    master = keys.split(":", 1)[1]

    admin_bodies: list[str] = []
    call_ids: dict[str, tuple[int, str]] = {}
    with production_logging(caplog) as stream:
        async with bridge_on(tmp_path, keys) as b:

            async def kept(method: str, path: str, status: int, **kwargs: Any) -> Any:
                """`b.admin`, keeping every answer body (none may carry a secret)."""
                r = await b.admin(method, path, status, **kwargs)
                if "apiKey" not in r.text:
                    admin_bodies.append(r.text)
                return r.json() if r.content else None

            async def call(path: str, status: int, auth: str, **kw: Any) -> None:
                headers = {**host("shop"), **kw.pop("headers", {})}
                r = await b.client.post("/call", json={"path": path, **kw}, headers=headers)
                assert r.status_code == status, r.text
                call_ids[r.headers["x-request-id"]] = (status, auth)

            await kept("POST", "/projects", 201, json={"id": "shop", "hosts": ["shop.example.org"]})
            await kept("PUT", "/projects/shop/envs/prod/connections/main", 200, json={"url": url})
            await kept(
                "PUT",
                "/projects/shop/envs/prod/connections/replica",
                400,
                json={"url": url.replace(where.split("/")[0], "127.0.0.1:1")},
            )
            await kept(
                "PUT", "/projects/shop/envs/prod/secrets/STRIPE_KEY", 200, json={"value": stripe}
            )
            await kept(
                "PUT", "/projects/shop/envs/prod/secrets/MAIL_PASSWORD", 200, json={"value": mail}
            )
            published = await kept(
                "POST", "/projects/shop/envs/prod/releases", 201, json={"files": DEMO}
            )
            r = await b.admin(
                "POST",
                "/projects/shop/envs/prod/api-keys",
                201,
                json={"name": "ci", "roles": ["admin"]},
            )
            created = r.json()
            api_key = created["apiKey"]
            assert set(r.json()) == {"keyId", "apiKey", "name", "roles", "createdAt"}
            keyed = {"X-Santokit-Api-Key": api_key}

            await call("logics/public/stats", 200, "anonymous")
            await call("logics/admin/activity", 200, "api_key", headers=keyed)
            await call(
                "logics/notebooks/summary",
                200,
                "api_key",
                headers=keyed,
                params={"owner_id": param_marker},
            )
            await call(
                "logics/notes/pin", 200, "api_key", headers=keyed, params={"note_id": param_marker}
            )
            # The same on a SQLite tenant (its driver logs every statement at DEBUG).
            await kept("POST", "/projects", 201, json={"id": "blog"})
            blog_url = seeded_sqlite(tmp_path / "blog.db")
            await kept(
                "PUT", "/projects/blog/envs/prod/connections/main", 200, json={"url": blog_url}
            )
            await kept("POST", "/projects/blog/envs/prod/releases", 201, json={"files": DEMO})
            r = await b.admin(
                "POST",
                "/projects/blog/envs/prod/api-keys",
                201,
                json={"name": "ci", "roles": ["admin"]},
            )
            blog_key = r.json()["apiKey"]
            r = await b.client.post(
                "/call",
                headers={"X-Santokit-Api-Key": blog_key},
                json={"path": "logics/notebooks/summary", "params": {"owner_id": param_marker}},
            )
            assert r.status_code == 200, r.text
            await call("logics/nope", 404, "anonymous")
            await call("logics/notebooks/summary", 400, "api_key", headers=keyed, params={})
            await call("logics/public/stats", 401, "", headers={"X-Santokit-Api-Key": forged_key})
            r = await b.client.get(
                A + "/projects", headers={"Authorization": f"Bearer {wrong_token}"}
            )
            assert r.status_code == 401 and wrong_token not in r.text

            await kept("POST", "/projects/shop/rotate-dek", 200)
            await call("logics/public/stats", 200, "anonymous")
            await kept("POST", "/keys/rewrap", 200)
            await kept("GET", "/keys/status", 200)
            await kept("GET", "/projects/shop", 200)
            await kept("GET", "/projects/shop/status", 200)
            await kept("GET", "/projects/shop/envs/prod/connections", 200)
            await kept("GET", "/projects/shop/envs/prod/secrets", 200)
            await kept("GET", "/projects/shop/envs/prod/api-keys", 200)
            await kept("GET", "/projects/shop/envs/prod/releases", 200)
            await kept("GET", "/projects/shop/envs/prod/releases/current", 200)
            await kept("GET", "/audit", 200)
            await kept("DELETE", f"/projects/shop/envs/prod/api-keys/{created['keyId']}", 204)
            await call("logics/public/stats", 401, "", headers=keyed)

            # A tenant database that refuses us: the stored URL carries the password.
            await kept(
                "PUT",
                "/projects/shop/envs/prod/connections/main",
                200,
                params={"verify": "false"},
                json={"url": url.replace(where.split("/")[0], "127.0.0.1:1")},
            )
            await call("logics/public/stats", 503, "anonymous")
            status = await kept("GET", "/projects/shop/status", 200)
            assert status["envs"]["prod"]["lastError"]

    async with bridge_on(tmp_path, keys) as b:
        sealed = {**await rows(b, "shop"), **await rows(b, "blog")}
    for ciphertext in sealed.values():
        assert not any(ciphertext in body for body in admin_bodies), "ciphertext in an answer"
    secrets = {
        "password": password,
        "url": url,
        "stripe": stripe,
        "mail": mail,
        "admin token": ADMIN_TOKEN,
        "wrong admin token": wrong_token,
        "api key": api_key,
        "api key secret": api_key.split(".", 1)[1],
        "blog api key": blog_key,
        "forged api key": forged_key,
        "sql parameter": param_marker,
        "master key": master,
    }
    records = caplog.records
    assert len(records) > 50 and any(r.levelno == logging.DEBUG for r in records)
    dumped = [str(r.__dict__) for r in records]
    output = stream.getvalue()
    for label, value in secrets.items():
        assert not any(value in text for text in dumped), f"{label} in a log record"
        assert value not in caplog.text, f"{label} in the text log"
        assert value not in output, f"{label} in the JSON log output"
        assert not any(value in body for body in admin_bodies), f"{label} in an admin answer"
    assert password not in str(created)

    lines = parse(stream)
    access = [line for line in lines if line["logger"] == "stk.access"]
    assert len(access) >= len(call_ids) + len(admin_bodies)
    for line in access:
        assert set(line) >= {"ts", "level", "msg", *REQUEST_FIELDS}
        assert isinstance(line["durationMs"], int | float) and line["durationMs"] >= 0
    calls = {line["requestId"]: line for line in access if line["requestId"] in call_ids}
    assert calls.keys() == call_ids.keys()
    for request_id, (status_code, auth) in call_ids.items():
        line = calls[request_id]
        assert line["status"] == status_code and line["route"].startswith("logics/")
        if status_code != 401:
            assert (line["project"], line["env"], line["authType"]) == ("shop", "prod", auth)
        if status_code in (200, 503):
            assert line["release"] == published["release"]
