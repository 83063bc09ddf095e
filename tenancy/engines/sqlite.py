"""SQLite tenant connections: aiosqlite in autocommit mode, typed errors.

Error mapping follows `tenancy.engines`; SQLite names its errors (`SQLITE_CONSTRAINT_UNIQUE`...).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

import aiosqlite

from tenancy.engines.base import QueryResult, quoted, timeout_message
from tenancy.errors import BadRequest, Conflict, ServiceUnavailable, StkError, Timeout

log = logging.getLogger("stk.engines")
PREFIX = "sqlite:///"
# How long a failed open waits for aiosqlite's thread to end (`opened`).
_THREAD_END_SECONDS = 5.0


class SqliteConnection:
    """An aiosqlite connection in autocommit mode (`isolation_level=None`)."""

    __slots__ = ("_conn", "_timeout_ms", "broken")

    def __init__(self, conn: aiosqlite.Connection, statement_timeout_ms: int) -> None:
        self._conn = conn
        self._timeout_ms = statement_timeout_ms
        self.broken = False

    @classmethod
    async def open(cls, path: str, statement_timeout_ms: int) -> SqliteConnection:
        try:
            conn = await opened(aiosqlite.connect(_rw_uri(path), uri=True, isolation_level=None))
        except sqlite3.Error as exc:
            reason = _open_reason(exc, path)
            raise ServiceUnavailable(f"Tenant database unavailable: {reason}") from None
        try:
            # Lock waits count against the statement's own budget.
            await conn.executescript(
                f"PRAGMA busy_timeout = {int(statement_timeout_ms)};"
                "PRAGMA foreign_keys = ON;"
                "PRAGMA synchronous = NORMAL;"
            )
            await _use_wal(conn, statement_timeout_ms / 1000)
        except sqlite3.Error as exc:
            await conn.close()
            reason = _open_reason(exc, path)
            raise ServiceUnavailable(f"Tenant database unavailable: {reason}") from None
        return cls(conn, statement_timeout_ms)

    async def run(self, sql: str, args: Sequence[Any]) -> QueryResult:
        # No cursor.close(): fetching to the end (or a statement without rows) already resets
        # the statement, and a close would queue behind a runaway statement we must interrupt.
        try:
            async with asyncio.timeout(self._timeout_ms / 1000):
                cursor = await self._conn.execute(sql, args)
                if cursor.description is None:
                    return QueryResult(None, max(cursor.rowcount, 0))
                rows = await cursor.fetchall()
        except TimeoutError:
            # The statement still runs in aiosqlite's thread: stop it, and let the connection go.
            self.broken = True
            await self._conn.interrupt()
            raise Timeout(timeout_message(self._timeout_ms)) from None
        except sqlite3.Error as exc:
            error = _statement_error(exc, self._timeout_ms)
            self.broken = isinstance(error, ServiceUnavailable | Timeout)
            raise error from None
        except BaseException:
            self.broken = True
            raise
        names = [column[0] for column in cursor.description]
        return QueryResult([dict(zip(names, row, strict=True)) for row in rows], None)

    def discard(self) -> None:
        self._conn.stop()  # closes in aiosqlite's thread once its current operation ends

    async def close(self) -> None:
        try:
            await self._conn.close()
        except Exception:
            self._conn.stop()


async def verify(path: str) -> None:
    """Open read-write without creating the file; reading the schema proves it is a database."""
    try:
        conn = await opened(aiosqlite.connect(_rw_uri(path), uri=True))
        try:
            await conn.execute_fetchall("SELECT 1 FROM sqlite_master LIMIT 1")
        finally:
            await conn.close()
    except sqlite3.Error as exc:
        # Missing, not a database, unreadable: one answer, so the check tells nobody which files
        # exist (issue 9); the operator's log keeps which it was.
        log.warning("connection check failed: %s", _open_reason(exc, path))
        raise BadRequest("Connection check failed: cannot open a SQLite database there") from None


async def opened(pending: aiosqlite.Connection) -> aiosqlite.Connection:
    """Await an `aiosqlite.connect(...)`; when the open fails, return only once its worker thread
    has ended.

    On a failed open aiosqlite stops its thread without waiting for it, and the thread's last act
    is a callback into this event loop: a loop closed before then (a shutdown, each test's own
    loop) turns it into "Event loop is closed" in that thread (`docs/tenancy.md`, "Connection
    pools"). Only a failure waits: a cancelled open returns at once, as a timeout needs.
    """
    try:
        return await pending
    except Exception:
        # Its last step is queued behind the failed open alone, so the thread ends at once; the
        # bound keeps a wedged one from holding the request (and an executor thread) for good.
        await asyncio.to_thread(pending._thread.join, _THREAD_END_SECONDS)
        raise


def path_of(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db`, as SQLAlchemy reads them."""
    path = unquote(url.removeprefix(PREFIX).partition("?")[0])
    if not path or path == ":memory:":
        raise BadRequest("A sqlite URL needs a database file: sqlite:///path")
    return path


def private_file(path: str) -> None:
    """Make `path` (and any journal beside it) readable by this user only, creating it empty if
    missing: SQLite gives the `-wal` and `-shm` files it creates the database file's mode, so
    0600 here keeps the whole database private (`docs/security.md`; issue 9 row 8)."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        if os.path.exists(name):
            os.chmod(name, 0o600)


def _rw_uri(path: str) -> str:
    return f"file:{quote(path)}?mode=rw"


def _open_reason(exc: sqlite3.Error, path: str) -> str:
    if not os.path.exists(path):
        return "file does not exist"
    if getattr(exc, "sqlite_errorname", None) == "SQLITE_NOTADB":
        return "file is not a database"
    return "cannot open file"


_UNAVAILABLE_SQLITE = (
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_NOTADB",
    "SQLITE_PERM",
    "SQLITE_READONLY",
)
# SQLite names columns in constraint messages ("UNIQUE constraint failed: users.email"); only a
# list of plain identifiers is repeated, so an expression of an unnamed CHECK never is.
_IDENTIFIERS = re.compile(r"[A-Za-z_][\w.]*(, [A-Za-z_][\w.]*)*")


def _statement_error(exc: sqlite3.Error, timeout_ms: int) -> StkError:
    name: str = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    subject = str(exc).rpartition(": ")[2]
    subject = subject if _IDENTIFIERS.fullmatch(subject) else ""
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return Conflict(f"Unique constraint{quoted(subject)} violated")
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return BadRequest("Foreign key constraint violated")
    if name == "SQLITE_CONSTRAINT_NOTNULL":
        column = subject.rpartition(".")[2]
        return BadRequest(f"Missing value for required column{quoted(column)}")
    if name == "SQLITE_CONSTRAINT_CHECK":
        return BadRequest(f"Check constraint{quoted(subject)} violated")
    if name == "SQLITE_INTERRUPT":
        return Timeout(timeout_message(timeout_ms))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ServiceUnavailable("Tenant database is busy")
    if name.startswith(_UNAVAILABLE_SQLITE):
        return ServiceUnavailable(f"Tenant database unavailable ({name})")
    return BadRequest(f"Statement failed: {name}")


async def _use_wal(conn: aiosqlite.Connection, budget_s: float) -> None:
    """Switch the file to WAL. When two connections switch a fresh file together, SQLite answers
    the loser BUSY at once (its busy handler does not apply): it retries within the budget, and
    finds WAL already set. The statement is read to its end so it holds no lock afterwards."""
    deadline = time.monotonic() + budget_s
    delay = 0.005
    while True:
        try:
            await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY")
            if not busy or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
