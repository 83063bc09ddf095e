"""Connection URL policy at registration (`docs/security.md`, connection URLs; issue 9 row 3):
the registry database, unix sockets, files outside the tenant-data directory and hosts off the
allow-list are 400 before anything connects; the connection check cannot tell a refused port,
a silent one and an unknown host apart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.bridge import Bridge, running_bridge
from support.services import pg_database, registry_database
from support.world import empty_sqlite

CONN = "/projects/shop/envs/prod/connections"


async def put(b: Bridge, url: str, verify: bool = True) -> tuple[int, str]:
    params = {} if verify else {"verify": "false"}
    r = await b.admin("PUT", f"{CONN}/main", json={"url": url}, params=params)
    return r.status_code, r.json()["error"]["message"] if r.status_code >= 400 else ""


@pytest.fixture
async def on_pg_registry(tmp_path: Path) -> AsyncIterator[tuple[Bridge, str]]:
    """A Bridge whose registry is a PostgreSQL database; its plain URL."""
    async with (
        registry_database("postgresql") as registry,
        running_bridge(tmp_path / "data", registry, tenant_data_dir=tmp_path / "tenants") as b,
    ):
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        assert registry is not None
        yield b, registry.replace("+asyncpg", "", 1)


async def test_the_registry_database_is_refused_by_any_spelling(
    on_pg_registry: tuple[Bridge, str],
) -> None:
    b, registry = on_pg_registry
    parts = urlsplit(registry)
    name, port = parts.path.lstrip("/"), parts.port or 5432
    spellings = [
        registry,
        f"postgresql://postgres@localhost:{port}/{name}",
        f"postgres://other:pw@127.0.0.1:{port}/{name}?sslmode=disable",
        f"postgresql://postgres@LOCALHOST.:{port}/{name}",
        f"postgresql://postgres@0.0.0.0:{port}/{name}",
        f"postgresql://postgres@[::1]:{port}/{name}",
        f"postgresql://postgres@db.invalid:1,127.0.0.1:{port}/{name}",
    ]
    for url in spellings:
        for verify in (True, False):
            assert await put(b, url, verify) == (
                400,
                "The connection URL points at the Bridge's registry",
            ), url
    # Another database of the same server is a tenant like any other.
    async with pg_database() as other:
        assert (await put(b, other))[0] == 200


async def test_unix_sockets_and_local_file_parameters_are_refused(
    on_pg_registry: tuple[Bridge, str],
) -> None:
    b, _ = on_pg_registry
    for url in (
        "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/postgres",
        "postgresql://postgres@/postgres",
        "postgresql://postgres@127.0.0.1,/postgres",
    ):
        status, message = await put(b, url, verify=False)
        assert status == 400 and "unix socket" in message, url
    for url in (
        "postgresql://postgres@127.0.0.1/postgres?host=/var/run/postgresql",
        "postgresql://postgres@127.0.0.1/postgres?passfile=/etc/passwd",
        "postgresql://postgres@127.0.0.1/postgres?sslkey=/root/.ssh/id_rsa",
    ):
        status, message = await put(b, url, verify=False)
        assert status == 400 and message.startswith("Connection URL parameters allowed"), url
    status, message = await put(b, "postgresql://postgres@127.0.0.1:5432", verify=False)
    assert status == 400 and "must name its database" in message


async def test_sqlite_files_must_be_in_the_tenant_data_directory(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    (tmp_path / "data").mkdir()
    async with running_bridge(tmp_path / "data", tenant_data_dir=tenants) as b:
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        registry = tmp_path / "data" / "registry.db"
        (tenants / "link.db").symlink_to(registry)
        outside = empty_sqlite(tmp_path / "outside.db")
        for url, message in (
            (f"sqlite:///{registry}", "points at the Bridge's registry"),
            (f"sqlite:///{tenants}/link.db", "points at the Bridge's registry"),
            (f"sqlite:///{tenants}/../data/registry.db", "points at the Bridge's registry"),
            (outside, "tenant-data directory"),
            ("sqlite:////etc/passwd", "tenant-data directory"),
        ):
            for verify in (True, False):
                status, text = await put(b, url, verify)
                assert status == 400 and message in text, url
        assert (await put(b, empty_sqlite(tenants / "shop.db")))[0] == 200


async def test_the_registry_file_is_refused_even_inside_the_tenant_directory(
    tmp_path: Path,
) -> None:
    async with running_bridge(tmp_path, tenant_data_dir=tmp_path) as b:
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        status, text = await put(b, f"sqlite:///{tmp_path}/registry.db")
        assert status == 400 and "registry" in text


async def test_the_allow_list_admits_only_its_hosts(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with running_bridge(tmp_path / "a", tenant_db_allow="10.0.0.0/8, db.example.com") as b:
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        status, text = await put(b, pg_url, verify=False)
        assert status == 400 and "STK_TENANT_DB_ALLOW" in text
        assert (await put(b, "postgresql://u@10.1.2.3/app", verify=False))[0] == 200
        assert (await put(b, "postgresql://u@DB.example.com/app", verify=False))[0] == 200
    async with running_bridge(tmp_path / "b", tenant_db_allow="127.0.0.0/8") as b:
        await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
        assert (await put(b, pg_url))[0] == 200


async def test_the_connection_check_is_no_port_scanner(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused, timed out and unknown host answer alike; the log keeps which it was."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # never answers
    port = silent.sockets[0].getsockname()[1]
    try:
        async with running_bridge(tmp_path, tenant_connect_timeout_ms=300) as b:
            await b.admin_json("POST", "/projects", 201, json={"id": "shop"})
            answers = set()
            with caplog.at_level(logging.WARNING, logger="stk.engines"):
                for url in (
                    "postgresql://u:p@127.0.0.1:1/app",
                    f"postgresql://u:p@127.0.0.1:{port}/app",
                    "postgresql://u:p@no-such-host.invalid/app",
                ):
                    answers.add(await put(b, url))
            assert answers == {
                (400, "Connection check failed: the database server could not be reached")
            }
            logged = caplog.text
            assert "connection refused" in logged and "timed out" in logged
            assert "host not found" in logged
    finally:
        silent.close()
