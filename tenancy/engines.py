"""The two tenant database drivers: PostgreSQL (asyncpg, directly) and SQLite (aiosqlite).

A driver opens one connection and runs one statement on it. Every driver failure becomes a typed
error with a message we wrote: driver text can quote parameter values and URLs can hold passwords,
so neither ever reaches a message, and errors are raised `from None` so they stay out of logs too.

Statement errors are mapped as follows: constraint violations are the caller's fault (unique and
exclusion → Conflict 409; foreign key, not-null, check → BadRequest 400, naming the constraint or
column); a serialization failure or deadlock is a Conflict the caller may retry; any other error
the database reports about the statement itself (syntax, unknown table, bad cast...) is a bug in
the project's own SQL, so it is a BadRequest "Statement failed: SQLSTATE <code> (<class>)" — a
fixed vocabulary the developer can act on, never the driver text. A database that cannot be
reached, or that fails as a system, is ServiceUnavailable 503; the statement timeout is Timeout 504.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote, unquote, urlsplit

import aiosqlite
import asyncpg
import orjson
from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError

from tenancy.encode import json_text
from tenancy.errors import BadRequest, Conflict, ServiceUnavailable, StkError, Timeout

Engine = Literal["postgresql", "sqlite"]

APPLICATION_NAME = "stk-bridge"
_SQLITE_PREFIX = "sqlite:///"
# Prepared statements kept per PostgreSQL connection (asyncpg's own cache default is 100).
_STATEMENT_CACHE_SIZE = 100
# The server enforces the statement timeout; this client-side margin only catches a server that
# stopped answering altogether.
_BACKSTOP_S = 1.0
# Command tags after which a PostgreSQL session is as we opened it (docs/decisions.md).
_SESSION_SAFE_TAGS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})


@dataclass(slots=True)
class QueryResult:
    """`rows` when the statement produced a result set (even empty), else `affected`."""

    rows: list[dict[str, Any]] | None
    affected: int | None


class Connection(Protocol):
    """One open tenant connection. Once `broken` is set, it must never be handed out again."""

    broken: bool

    async def run(self, sql: str, args: Sequence[Any]) -> QueryResult: ...

    def discard(self) -> None:
        """Drop the connection now, without waiting for anything."""

    async def close(self) -> None:
        """Close the connection politely; never raises."""


def engine_of(url: str) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if url.startswith(_SQLITE_PREFIX):
        _sqlite_path(url)
        return "sqlite"
    raise BadRequest("Unsupported database URL: expected postgresql://... or sqlite:///path")


def connector(
    url: str, statement_timeout_ms: int, connect_timeout_s: float = 5
) -> Callable[[], Awaitable[Connection]]:
    """A function opening connections to `url`, each running statements under the timeout.

    `connect_timeout_s` bounds a PostgreSQL connect (a SQLite file opens without a network wait).
    """
    if engine_of(url) == "postgresql":
        return lambda: _PgConnection.open(url, statement_timeout_ms, connect_timeout_s)
    path = _sqlite_path(url)
    return lambda: _SqliteConnection.open(path, statement_timeout_ms)


async def verify_url(url: str, timeout_s: float = 5) -> Engine:
    """Connect, run `SELECT 1`, close; a failure is a BadRequest with a sanitized reason."""
    engine = engine_of(url)
    if engine == "sqlite":
        await _verify_sqlite(_sqlite_path(url))
        return engine
    try:
        conn = await asyncpg.connect(
            url, timeout=timeout_s, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        finally:
            await conn.close(timeout=timeout_s)
    except Exception as exc:
        raise BadRequest(f"Connection check failed: {_pg_connect_reason(exc, url)}") from None
    return engine


# --- PostgreSQL -------------------------------------------------------------------------------


class _PgConnection:
    """A raw asyncpg connection with our own prepared-statement cache.

    We prepare statements ourselves because only a PreparedStatement tells whether a statement
    has a result set (`get_attributes()`) and its status (`get_statusmsg()`); asyncpg's pool
    invalidates PreparedStatements on every release, hence our own pool and cache.
    """

    __slots__ = ("_conn", "_statements", "_timeout_ms", "broken")

    def __init__(self, conn: asyncpg.Connection, statement_timeout_ms: int) -> None:
        self._conn = conn
        self._timeout_ms = statement_timeout_ms
        self._statements: OrderedDict[str, Any] = OrderedDict()
        self.broken = False

    @classmethod
    async def open(
        cls, url: str, statement_timeout_ms: int, connect_timeout_s: float
    ) -> _PgConnection:
        settings = {
            "application_name": APPLICATION_NAME,
            "statement_timeout": str(statement_timeout_ms),
        }
        try:
            conn = await asyncpg.connect(url, timeout=connect_timeout_s, server_settings=settings)
        except Exception as exc:
            reason = _pg_connect_reason(exc, None)
            raise ServiceUnavailable(f"Tenant database unavailable: {reason}") from None
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(
                    name, schema="pg_catalog", encoder=json_text, decoder=orjson.loads
                )
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, Exception):
                raise ServiceUnavailable("Tenant database unavailable: setup failed") from None
            raise
        return cls(conn, statement_timeout_ms)

    async def run(self, sql: str, args: Sequence[Any]) -> QueryResult:
        backstop = self._timeout_ms / 1000 + _BACKSTOP_S
        try:
            try:
                statement = await self._prepare(sql, backstop)
                records = await statement.fetch(*args, timeout=backstop)
            except (InvalidCachedStatementError, OutdatedSchemaCacheError):
                # The tenant's schema changed under a cached plan: prepare again, once.
                del self._statements[sql]
                statement = await self._prepare(sql, backstop)
                records = await statement.fetch(*args, timeout=backstop)
        except asyncpg.PostgresError as exc:
            error = _pg_statement_error(exc, self._timeout_ms)
            self.broken = isinstance(error, ServiceUnavailable)
            raise error from None
        except TimeoutError:
            self.broken = True
            raise Timeout(_timeout_message(self._timeout_ms)) from None
        except (OSError, asyncpg.InterfaceError):
            self.broken = True
            raise ServiceUnavailable("Tenant database unavailable: connection lost") from None
        except BaseException:
            self.broken = True  # cancelled mid-statement: the session state is unknown
            raise
        status: str = statement.get_statusmsg()
        if status.partition(" ")[0] not in _SESSION_SAFE_TAGS:
            self.broken = True  # SET, LISTEN, DECLARE, BEGIN...: never reuse that session
        if statement.get_attributes():
            return QueryResult([dict(record.items()) for record in records], None)
        return QueryResult(None, _affected(status))

    async def _prepare(self, sql: str, backstop_s: float) -> Any:
        statement = self._statements.get(sql)
        if statement is not None:
            self._statements.move_to_end(sql)
            return statement
        statement = await self._conn.prepare(sql, timeout=backstop_s)
        self._statements[sql] = statement
        if len(self._statements) > _STATEMENT_CACHE_SIZE:
            self._statements.popitem(last=False)
        return statement

    def discard(self) -> None:
        self._conn.terminate()

    async def close(self) -> None:
        try:
            await self._conn.close(timeout=2)
        except Exception:
            self._conn.terminate()


def _affected(status: str) -> int:
    count = status.rpartition(" ")[2]
    return int(count) if count.isdigit() else 0


def _timeout_message(timeout_ms: int) -> str:
    return f"Statement exceeded the {timeout_ms} ms timeout"


# SQLSTATE classes (PostgreSQL manual, appendix A) a project's statement can fail with.
_SQLSTATE_CLASSES = {
    "0A": "feature not supported",
    "21": "cardinality violation",
    "22": "data exception",
    "23": "integrity constraint violation",
    "25": "invalid transaction state",
    "26": "invalid SQL statement name",
    "2B": "dependent privilege descriptors still exist",
    "2D": "invalid transaction termination",
    "2F": "SQL routine exception",
    "34": "invalid cursor name",
    "38": "external routine exception",
    "39": "external routine invocation exception",
    "3B": "savepoint exception",
    "3F": "invalid schema name",
    "42": "syntax error or access rule violation",
    "44": "WITH CHECK OPTION violation",
    "54": "program limit exceeded",
    "55": "object not in prerequisite state",
    "P0": "PL/pgSQL error",
}
# Classes meaning the database (not the statement) is in trouble: connection, resources,
# operator intervention, system and internal errors.
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58", "F0", "XX"})


def _pg_statement_error(exc: asyncpg.PostgresError, timeout_ms: int) -> StkError:
    code: str = exc.sqlstate or "XX000"
    constraint = _quoted(getattr(exc, "constraint_name", None))
    if code == "23505":
        return Conflict(f"Unique constraint{constraint} violated")
    if code == "23P01":
        return Conflict(f"Exclusion constraint{constraint} violated")
    if code == "23503":
        return BadRequest(f"Foreign key constraint{constraint} violated")
    if code == "23502":
        return BadRequest(f"Missing value for required column{_quoted(exc.column_name)}")
    if code == "23514":
        return BadRequest(f"Check constraint{constraint} violated")
    if code == "57014":
        return Timeout(_timeout_message(timeout_ms))
    if code.startswith("40"):
        return Conflict("Statement conflicted with a concurrent transaction; retry")
    if code[:2] in _UNAVAILABLE_CLASSES:
        return ServiceUnavailable(f"Tenant database unavailable (SQLSTATE {code})")
    return BadRequest(
        f"Statement failed: SQLSTATE {code} ({_SQLSTATE_CLASSES.get(code[:2], 'database error')})"
    )


def _quoted(name: str | None) -> str:
    return f" '{name}'" if name else ""


def _pg_connect_reason(exc: BaseException, url: str | None) -> str:
    """A reason fit for an operator: fixed words plus, for network errors, host and port."""
    where = f"could not connect to {_address(url)}: " if url else ""
    if isinstance(exc, asyncpg.PostgresError):
        code = exc.sqlstate or ""
        if code == "3D000":
            return "database does not exist"
        if code.startswith("28"):
            return "authentication failed"
        if code == "53300":
            return "too many connections"
        if code.startswith("57P"):
            return "server is starting up or shutting down"
        return f"server refused the connection (SQLSTATE {code})"
    if isinstance(exc, TimeoutError):
        return where + "timed out"
    if isinstance(exc, socket.gaierror):
        return where + "host not found"
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return where + "connection refused"
    if isinstance(exc, OSError):
        return where + "network error"
    if isinstance(exc, ValueError):  # asyncpg.ClientConfigurationError included
        return "invalid connection URL"
    return where + "connection failed"


def _address(url: str) -> str:
    """host:port of a URL; whatever precedes the last '@' (user, password) is dropped."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return "the server"
    return netloc.rpartition("@")[2] or "the default host"


# --- SQLite -----------------------------------------------------------------------------------


class _SqliteConnection:
    """An aiosqlite connection in autocommit mode (`isolation_level=None`)."""

    __slots__ = ("_conn", "_timeout_ms", "broken")

    def __init__(self, conn: aiosqlite.Connection, statement_timeout_ms: int) -> None:
        self._conn = conn
        self._timeout_ms = statement_timeout_ms
        self.broken = False

    @classmethod
    async def open(cls, path: str, statement_timeout_ms: int) -> _SqliteConnection:
        try:
            conn = await aiosqlite.connect(_rw_uri(path), uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            reason = _sqlite_open_reason(exc, path)
            raise ServiceUnavailable(f"Tenant database unavailable: {reason}") from None
        try:
            # Lock waits count against the statement's own budget.
            await conn.executescript(
                f"PRAGMA busy_timeout = {int(statement_timeout_ms)};"
                "PRAGMA foreign_keys = ON;"
                "PRAGMA journal_mode = WAL;"
                "PRAGMA synchronous = NORMAL;"
            )
        except sqlite3.Error as exc:
            await conn.close()
            reason = _sqlite_open_reason(exc, path)
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
            raise Timeout(_timeout_message(self._timeout_ms)) from None
        except sqlite3.Error as exc:
            error = _sqlite_statement_error(exc, self._timeout_ms)
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


async def _verify_sqlite(path: str) -> None:
    """Open read-write without creating the file; reading the schema proves it is a database."""
    try:
        async with aiosqlite.connect(_rw_uri(path), uri=True) as conn:
            await conn.execute_fetchall("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.Error as exc:
        reason = _sqlite_open_reason(exc, path)
        raise BadRequest(f"Connection check failed: {reason}") from None


def _sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db`, as SQLAlchemy reads them."""
    path = unquote(url.removeprefix(_SQLITE_PREFIX).partition("?")[0])
    if not path or path == ":memory:":
        raise BadRequest("A sqlite URL needs a database file: sqlite:///path")
    return path


def _rw_uri(path: str) -> str:
    return f"file:{quote(path)}?mode=rw"


def _sqlite_open_reason(exc: sqlite3.Error, path: str) -> str:
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


def _sqlite_statement_error(exc: sqlite3.Error, timeout_ms: int) -> StkError:
    name: str = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    subject = str(exc).rpartition(": ")[2]
    subject = subject if _IDENTIFIERS.fullmatch(subject) else ""
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return Conflict(f"Unique constraint{_quoted(subject)} violated")
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return BadRequest("Foreign key constraint violated")
    if name == "SQLITE_CONSTRAINT_NOTNULL":
        column = subject.rpartition(".")[2]
        return BadRequest(f"Missing value for required column{_quoted(column)}")
    if name == "SQLITE_CONSTRAINT_CHECK":
        return BadRequest(f"Check constraint{_quoted(subject)} violated")
    if name == "SQLITE_INTERRUPT":
        return Timeout(_timeout_message(timeout_ms))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ServiceUnavailable("Tenant database is busy")
    if name.startswith(_UNAVAILABLE_SQLITE):
        return ServiceUnavailable(f"Tenant database unavailable ({name})")
    return BadRequest(f"Statement failed: {name}")
