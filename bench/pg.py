"""PostgreSQL for the benchmark: a private throw-away cluster (default), or an existing server.

A private cluster is the default because S4 keeps ~100 warm tenant pools open on the Bridge and as
many on the floor: more than a stock server's `max_connections = 100`, and the development server
is shared with test runs. `BENCH_PG_URL=postgresql://user@host:port/db` uses an existing server
instead (it must allow MIN_CONNECTIONS). Either way every database is named `stk_bench_*` and is
dropped at the end; a private cluster is removed whole.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.procs import free_port

PREFIX = "stk_bench_"
MIN_CONNECTIONS = 500
# What the private cluster changes from initdb's defaults, and why.
CLUSTER_SETTINGS = {
    # S4/S6: up to 100 tenant pools x 5 connections on each of the Bridge and the floor, at once
    "max_connections": "1200",
    "listen_addresses": "127.0.0.1",
    "log_line_prefix": "'%m [%p] '",  # pg_ctl hands -o to a shell: quoted
}
_EXECUTE = re.compile(r"\bLOG:  duration: [0-9.]+ ms  execute [^:]+: (.*)", re.DOTALL)


class Postgres:
    def __init__(self, server_url: str, cluster: Path | None = None) -> None:
        parts = urlsplit(server_url)
        self._base = f"{parts.scheme}://{parts.netloc}"
        self.cluster = cluster
        self.created: list[str] = []

    def url(self, database: str) -> str:
        return f"{self._base}/{database}"

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url("postgres"), timeout=10)

    async def fetchval(self, sql: str, database: str = "postgres") -> Any:
        conn = await asyncpg.connect(self.url(database), timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def execute(self, database: str, sql: str, *args: Any) -> None:
        conn = await asyncpg.connect(self.url(database), timeout=10)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def create_database(self, suffix: str, template: str | None = None) -> str:
        name = PREFIX + suffix
        admin = await self._admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            copy = f' TEMPLATE "{template}"' if template else ""
            await admin.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            await admin.close()
        self.created.append(name)
        return name

    async def connections(self, application_name: str) -> int:
        value = await self.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE application_name = '{application_name}' AND datname LIKE '{PREFIX}%'"
        )
        return int(value)

    async def drop_all(self) -> None:
        admin = await self._admin()
        try:
            for name in reversed(self.created):
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        self.created.clear()

    async def capture(self, action: Callable[[], Awaitable[Any]]) -> list[str] | None:
        """Statements executed during `action` (from the server log); None without a log."""
        if self.cluster is None:
            return None
        log = self.cluster / "server.log"
        start = log.stat().st_size
        await self._set_log_all(True)
        try:
            await action()
        finally:
            await self._set_log_all(False)
        with log.open(encoding="utf-8", errors="replace") as handle:
            handle.seek(start)
            text = handle.read()
        # An entry starts with the line prefix (a timestamp); a statement may span lines.
        entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", text)
        found = [" ".join(m[1].split()) for e in entries if (m := _EXECUTE.search(e))]
        return [sql for sql in found if "log_min_duration_statement" not in sql]

    async def _set_log_all(self, on: bool) -> None:
        admin = await self._admin()
        try:
            if on:
                await admin.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            else:
                await admin.execute("ALTER SYSTEM RESET log_min_duration_statement")
            await admin.execute("SELECT pg_reload_conf()")
        finally:
            await admin.close()
        await asyncio.sleep(0.3)  # backends apply the reload before their next statement


def _bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if not versions:
        raise SystemExit(
            "bench: PostgreSQL server binaries (initdb) not found; install them "
            "(apt-get install -y postgresql) or set BENCH_PG_URL to an existing server"
        )
    return Path(versions[-1]).parent


def _version_key(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", path)
    return int(match[1]) if match else 0


def _as_postgres() -> list[str]:
    """initdb refuses to run as root: run the cluster as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start_private() -> Postgres:
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="stk-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    run = _as_postgres()
    pg = Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", root)
    try:
        _init_and_start(bindir, run, data, port, root)
    except BaseException:
        stop_private(pg)
        raise
    return pg


def _init_and_start(bindir: Path, run: list[str], data: Path, port: int, root: Path) -> None:
    initdb = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"]
    subprocess.run(
        [*run, str(bindir / "initdb"), "-D", str(data), *initdb], check=True, capture_output=True
    )
    options = " ".join(f"-c {k}={v}" for k, v in {**CLUSTER_SETTINGS, "port": str(port)}.items())
    options += f" -c unix_socket_directories={root}"
    start = ["-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"]
    subprocess.run(
        [*run, str(bindir / "pg_ctl"), "-D", str(data), *start], check=True, capture_output=True
    )


def stop_private(pg: Postgres) -> None:
    if pg.cluster is None:
        return
    data = pg.cluster / "data"
    if data.exists():
        stop = ["-D", str(data), "-m", "fast", "-w", "stop"]
        pg_ctl = str(_bindir() / "pg_ctl")
        subprocess.run([*_as_postgres(), pg_ctl, *stop], capture_output=True, check=False)
    shutil.rmtree(pg.cluster, ignore_errors=True)


async def external(url: str) -> Postgres:
    pg = Postgres(url)
    limit = int(await pg.fetchval("SHOW max_connections"))
    if limit < MIN_CONNECTIONS:
        raise SystemExit(
            f"bench: {urlsplit(url).hostname} allows max_connections={limit}; S4 needs "
            f">= {MIN_CONNECTIONS} (about 100 warm tenant pools on each of the Bridge and the "
            "floor). Unset BENCH_PG_URL to use a private cluster, or raise max_connections."
        )
    return pg
