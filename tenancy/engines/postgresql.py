"""PostgreSQL tenant connections: raw asyncpg, our own prepared-statement cache, typed errors.

Error mapping follows `tenancy.engines`; SQLSTATE classes are named from the PostgreSQL manual.
"""

from __future__ import annotations

import logging
import socket
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError

from tenancy.engines.base import QueryResult, quoted, timeout_message
from tenancy.errors import BadRequest, Conflict, ServiceUnavailable, StkError, Timeout
from tenancy.types import pg_json

log = logging.getLogger("stk.engines")
APPLICATION_NAME = "stk-bridge"
UNREACHABLE = "the database server could not be reached"
# Prepared statements kept per PostgreSQL connection (asyncpg's own cache default is 100).
_STATEMENT_CACHE_SIZE = 100
# The server enforces the statement timeout; this client-side margin only catches a server that
# stopped answering altogether.
_BACKSTOP_S = 1.0
# Command tags after which a PostgreSQL session is as we opened it (docs/decisions.md).
_SESSION_SAFE_TAGS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})


async def verify(url: str, timeout_s: float) -> None:
    """Connect, run `SELECT 1`, close; a failure is a BadRequest with a sanitized reason."""
    try:
        conn = await asyncpg.connect(
            url, timeout=timeout_s, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        finally:
            await conn.close(timeout=timeout_s)
    except Exception as exc:
        reason = _connect_reason(exc, url)
        if not isinstance(exc, asyncpg.PostgresError | ValueError):
            # Refused, timed out, no such host: one answer, so the check is no port scanner
            # (issue 9); the operator's log keeps which it was.
            log.warning("connection check failed: %s", reason)
            reason = UNREACHABLE
        raise BadRequest(f"Connection check failed: {reason}") from None


class PgConnection:
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
    ) -> PgConnection:
        settings = {
            "application_name": APPLICATION_NAME,
            "statement_timeout": str(statement_timeout_ms),
        }
        try:
            conn = await asyncpg.connect(url, timeout=connect_timeout_s, server_settings=settings)
        except Exception as exc:
            reason = _connect_reason(exc, None)
            raise ServiceUnavailable(f"Tenant database unavailable: {reason}") from None
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(
                    name, schema="pg_catalog", encoder=pg_json, decoder=orjson.loads
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
            error = _statement_error(exc, self._timeout_ms)
            self.broken = isinstance(error, ServiceUnavailable)
            raise error from None
        except TimeoutError:
            self.broken = True
            raise Timeout(timeout_message(self._timeout_ms)) from None
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


def _statement_error(exc: asyncpg.PostgresError, timeout_ms: int) -> StkError:
    code: str = exc.sqlstate or "XX000"
    constraint = quoted(getattr(exc, "constraint_name", None))
    if code == "23505":
        return Conflict(f"Unique constraint{constraint} violated")
    if code == "23P01":
        return Conflict(f"Exclusion constraint{constraint} violated")
    if code == "23503":
        return BadRequest(f"Foreign key constraint{constraint} violated")
    if code == "23502":
        return BadRequest(f"Missing value for required column{quoted(exc.column_name)}")
    if code == "23514":
        return BadRequest(f"Check constraint{constraint} violated")
    if code == "57014":
        return Timeout(timeout_message(timeout_ms))
    if code.startswith("40"):
        return Conflict("Statement conflicted with a concurrent transaction; retry")
    if code[:2] in _UNAVAILABLE_CLASSES:
        return ServiceUnavailable(f"Tenant database unavailable (SQLSTATE {code})")
    return BadRequest(
        f"Statement failed: SQLSTATE {code} ({_SQLSTATE_CLASSES.get(code[:2], 'database error')})"
    )


def _connect_reason(exc: BaseException, url: str | None) -> str:
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
