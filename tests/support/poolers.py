"""Debian's PgBouncer in front of the test PostgreSQL, one process per test (`docs/poolers.md`).

`make poolers` installs it (`make test` runs that target); when it is missing the tests skip with
one line, or fail under STK_REQUIRE_SERVICES=1. The `pgbouncer` fixture starts poolers in session
or transaction mode with a server pool smaller than the Bridge's own (`POOL_SIZE`), on a free port,
with their configuration in the test's tmp directory, and stops each one after the test.
`bench/poolers.py` starts its poolers with the same `PgBouncer`.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.processes import free_port
from support.services import PG_URL, unavailable

PGBOUNCER = os.environ.get("STK_TEST_PGBOUNCER", "/usr/sbin/pgbouncer")
# Server connections per (database, user): fewer than the Bridge's pool in front of it.
POOL_SIZE = 2
StartPooler = Callable[..., "PgBouncer"]


def _run_as() -> list[str]:
    """PgBouncer refuses to run as root: as root, drop to postgres (else nobody)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["-u", user]
    return []


class PgBouncer:
    """One PgBouncer process; `stop` and `start` again keep its port (a pooler restart)."""

    def __init__(
        self, directory: Path, mode: str, pool_size: int, server_url: str = PG_URL
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.port = free_port()
        self.config = directory / "pgbouncer.ini"
        self.log = directory / "pgbouncer.log"
        self._proc: subprocess.Popen[bytes] | None = None
        server = urlsplit(server_url)
        user = server.username or "postgres"
        (directory / "users.txt").write_text(f'"{user}" ""\n')
        self.config.write_text(
            "[databases]\n"
            f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "pidfile =\n"
            "logfile =\n"
            "auth_type = trust\n"
            f"auth_file = {directory / 'users.txt'}\n"
            f"pool_mode = {mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
        )

    def url(self, database_url: str) -> str:
        """The test database at `database_url` reached through this pooler."""
        parts = urlsplit(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        return f"postgresql://{credentials}@127.0.0.1:{self.port}{parts.path}"

    def start(self, timeout: float = 10) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [PGBOUNCER, *_run_as(), str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"pgbouncer did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: PgBouncer's immediate shutdown (every client connection is cut)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def pgbouncer(tmp_path: Path) -> Iterator[StartPooler]:
    """`pgbouncer(mode, pool_size=POOL_SIZE)` starts a PgBouncer; all are stopped after."""
    if not os.access(PGBOUNCER, os.X_OK):
        unavailable("PgBouncer", f"not installed at {PGBOUNCER} (make poolers)")
    started: list[PgBouncer] = []

    def start(mode: str, pool_size: int = POOL_SIZE) -> PgBouncer:
        pooler = PgBouncer(tmp_path / f"pgbouncer-{len(started)}", mode, pool_size)
        started.append(pooler)
        pooler.start()
        return pooler

    yield start
    for pooler in started:
        pooler.stop()
