"""PostgreSQL tenant connections: raw asyncpg, our own prepared-statement cache, typed errors.

What a connection does depends on the pooler declared with it (`docs/poolers.md`):

- `none` (direct): the statement timeout is a startup parameter, named prepared statements are
  cached per connection;
- `session`: as direct, except that the timeout is `SET` once the connection is open (poolers
  refuse startup parameters they do not know); the server connection is ours while ours lives;
- `transaction`: each statement runs in a transaction of its own (`BEGIN; SET LOCAL
  statement_timeout`, the statement, `COMMIT`), unnamed (asyncpg `statement_cache_size=0`), and
  leaves no session state behind: the next transaction may run on another server connection, and
  the one it borrowed serves other clients next.

Error mapping follows `tenancy.engines`; SQLSTATE classes are named from the PostgreSQL manual.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError

from tenancy.engines.base import Pooler, QueryResult, quoted, timeout_message
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
# A statement run: the prepared statement, whether it has a result set, its records.
_Ran = tuple[Any, bool, list[Any]]
# Command tags after which a PostgreSQL session is as we opened it (docs/decisions.md).
_SESSION_SAFE_TAGS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})
# A statement opening the caller's own transaction (schema apply runs `BEGIN` ... `COMMIT`).
_OPENS_TRANSACTION = re.compile(r"\s*(BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
# What DISCARD ALL does, in the forms a transaction block allows (PostgreSQL manual, DISCARD):
# run before COMMIT in transaction mode after a statement that may have changed the session.
_RESET_SESSION = (
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES"
)
# The registration check's statement: parameterized and prepared, as every request's is.
_CHECK_SQL = "SELECT $1::int AS ok"
_LOST_STATEMENT = (
    "Tenant database unavailable: a prepared statement did not survive to the next transaction,"
    ' as behind a pooler in transaction mode; register the connection with "pooler": "transaction"'
)


async def verify(url: str, timeout_s: float, pooler: Pooler = "none") -> None:
    """The registration check, through the runtime's own path: a connection opened as pools open
    them, the runtime's kind of statement (parameterized, prepared) run twice, closed. A failure
    is a BadRequest with a sanitized reason."""
    conn = await PgConnection.open(url, int(timeout_s * 1000), timeout_s, pooler, checking=True)
    try:
        for _ in range(2):
            await conn.run(_CHECK_SQL, (1,))
    except StkError as exc:
        raise BadRequest(f"Connection check failed: {exc.message}") from None
    finally:
        await conn.close()


class PgConnection:
    """A raw asyncpg connection with our own prepared-statement cache.

    We prepare statements ourselves because only a PreparedStatement tells whether a statement
    has a result set (`get_attributes()`) and its status (`get_statusmsg()`); asyncpg's pool
    invalidates PreparedStatements on every release, hence our own pool and cache. Whether a
    statement has a result set is kept beside it: `get_attributes()` builds its column
    descriptions anew on every call (`docs/decisions.md`, hot path). Behind a pooler in
    transaction mode nothing is cached: statements are unnamed (module docstring).

    The backstop (a server that stopped answering) is a watch of the connection's own, not a
    timeout per statement (`docs/decisions.md`, hot path): a statement records when it is due,
    and one timer, re-armed when it fires while statements keep running, ends the connection of
    one that is late, which fails it with 504. A busy connection arms a timer about once per
    backstop period instead of arming and cancelling one per statement.
    """

    __slots__ = (
        "_conn",
        "_due",
        "_local_timeout",
        "_loop",
        "_overdue",
        "_pooler",
        "_statements",
        "_timeout_ms",
        "_watch",
        "broken",
    )

    def __init__(self, conn: asyncpg.Connection, statement_timeout_ms: int, pooler: Pooler) -> None:
        self._conn = conn
        self._timeout_ms = statement_timeout_ms
        self._pooler = pooler
        self._local_timeout = f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
        self._statements: OrderedDict[str, tuple[Any, bool]] = OrderedDict()
        self._loop = asyncio.get_running_loop()  # looked up once (a system call on 3.11)
        self._due: float | None = None  # when the running statement is late
        self._watch: asyncio.TimerHandle | None = None
        self._overdue = False
        self.broken = False

    @classmethod
    async def open(
        cls,
        url: str,
        statement_timeout_ms: int,
        connect_timeout_s: float,
        pooler: Pooler = "none",
        *,
        checking: bool = False,
    ) -> PgConnection:
        """A connection for `pooler`; a failure is a ServiceUnavailable, or with `checking` (the
        registration check) a BadRequest whose reason also names the host and port."""
        settings = {"application_name": APPLICATION_NAME}
        if pooler == "none":
            settings["statement_timeout"] = str(statement_timeout_ms)
        try:
            conn = await asyncpg.connect(
                url,
                timeout=connect_timeout_s,
                server_settings=settings,
                statement_cache_size=0 if pooler == "transaction" else _STATEMENT_CACHE_SIZE,
            )
        except Exception as exc:
            reason = _connect_reason(exc, url if checking else None, pooler)
            if checking and not isinstance(exc, asyncpg.PostgresError | ValueError):
                # Refused, timed out, no such host: one answer, so the check is no port scanner
                # (issue 9); the operator's log keeps which it was.
                log.warning("connection check failed: %s", reason)
                reason = UNREACHABLE
            raise _connect_error(reason, checking) from None
        try:
            # Bounded like the connect: a pooler in session mode with every server connection
            # taken makes a new client wait for its first statement.
            async with asyncio.timeout(connect_timeout_s):
                for name in ("json", "jsonb"):
                    await conn.set_type_codec(
                        name, schema="pg_catalog", encoder=pg_json, decoder=orjson.loads
                    )
                if pooler == "session":
                    await conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, TimeoutError):
                raise _connect_error("setup timed out", checking) from None
            if isinstance(exc, Exception):
                raise _connect_error("setup failed", checking) from None
            raise
        return cls(conn, statement_timeout_ms, pooler)

    async def run(self, sql: str, args: Sequence[Any]) -> QueryResult:
        backstop = self._timeout_ms / 1000 + _BACKSTOP_S
        self._due = due = self._loop.time() + backstop
        if self._watch is None:
            self._watch = self._loop.call_at(due, self._check)
        try:
            if self._pooler == "transaction":
                statement, has_rows, records = await self._in_transaction(sql, args, backstop)
            else:
                statement, has_rows, records = await self._cached(sql, args, backstop)
        except Exception as exc:
            if self._overdue:  # ended by the watch: the server stopped answering
                self.broken = True
                raise Timeout(timeout_message(self._timeout_ms)) from None
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from None
        except BaseException:
            self.broken = True  # cancelled mid-statement: the session state is unknown
            raise
        finally:
            self._due = None
        status: str = statement.get_statusmsg()
        if status.partition(" ")[0] not in _SESSION_SAFE_TAGS:
            self.broken = True  # SET, LISTEN, DECLARE, BEGIN...: never reuse that session
        if has_rows:
            return QueryResult([dict(record.items()) for record in records], None)
        return QueryResult(None, _affected(status))

    def _failed(self, exc: Exception) -> Exception:
        """What a failed statement raises (`exc` itself when it is not one we map); the
        connection is marked broken when the failure may have left it unusable."""
        if isinstance(exc, asyncpg.PostgresError):
            error = _statement_error(exc, self._timeout_ms, self._pooler)
            if isinstance(error, ServiceUnavailable):
                self.broken = True
            return error
        self.broken = True
        if isinstance(exc, TimeoutError):
            return Timeout(timeout_message(self._timeout_ms))
        if isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.InternalClientError):
            # InternalClientError: the server ended the session (a failover, a terminated
            # backend) while asyncpg thought the connection idle; its next statement finds the
            # protocol in an impossible state ("cannot switch to state ...").
            return ServiceUnavailable("Tenant database unavailable: connection lost")
        return exc

    def _check(self) -> None:
        """The watch (class docstring): end the connection of a late statement."""
        self._watch = None
        due = self._due
        if due is None:  # idle: the next statement arms the watch again
            return
        if self._loop.time() < due:
            self._watch = self._loop.call_at(due, self._check)
            return
        self._overdue = True
        self._conn.terminate()

    async def _cached(self, sql: str, args: Sequence[Any], backstop_s: float) -> _Ran:
        """Direct or session: the statement prepared once per connection, then reused (timed by
        the watch; a prepare also by asyncpg, as it is rare)."""
        try:
            statement, has_rows = await self._prepare(sql, backstop_s)
            return statement, has_rows, await statement.fetch(*args)
        except (InvalidCachedStatementError, OutdatedSchemaCacheError):
            # The tenant's schema changed under a cached plan: prepare again, once.
            del self._statements[sql]
            statement, has_rows = await self._prepare(sql, backstop_s)
            return statement, has_rows, await statement.fetch(*args)

    async def _prepare(self, sql: str, backstop_s: float) -> tuple[Any, bool]:
        """The prepared statement of `sql` and whether it has a result set."""
        found = self._statements.get(sql)
        if found is not None:
            self._statements.move_to_end(sql)
            return found
        statement = await self._conn.prepare(sql, timeout=backstop_s)
        found = self._statements[sql] = (statement, bool(statement.get_attributes()))
        if len(self._statements) > _STATEMENT_CACHE_SIZE:
            self._statements.popitem(last=False)
        return found

    async def _in_transaction(self, sql: str, args: Sequence[Any], backstop_s: float) -> _Ran:
        """Transaction mode: the statement in a transaction of its own, so that the pooler keeps
        one server connection for all of it; what it may have changed in the session is reset
        before COMMIT. Statements of the caller's own transaction run as they are."""
        conn = self._conn
        if conn.is_in_transaction():
            return await self._unnamed(sql, args, backstop_s)
        if _OPENS_TRANSACTION.match(sql):
            done = await self._unnamed(sql, args, backstop_s)
            if conn.is_in_transaction():  # the timeout holds for the caller's transaction
                await conn.execute(self._local_timeout, timeout=backstop_s)
            return done
        await conn.execute(f"BEGIN; {self._local_timeout}", timeout=backstop_s)
        try:
            ran = await self._unnamed(sql, args, backstop_s)
            statement = ran[0]
            if conn.is_in_transaction():
                if statement.get_statusmsg().partition(" ")[0] not in _SESSION_SAFE_TAGS:
                    await conn.execute(_RESET_SESSION, timeout=backstop_s)
                await conn.execute("COMMIT", timeout=backstop_s)
        except asyncpg.PostgresError:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK", timeout=backstop_s)
            raise
        return ran

    async def _unnamed(self, sql: str, args: Sequence[Any], backstop_s: float) -> _Ran:
        # With statement_cache_size=0 asyncpg prepares the unnamed statement, and parses it again
        # with each execution (asyncpg FAQ, "pgbouncer").
        statement = await self._conn.prepare(sql, timeout=backstop_s)
        has_rows = bool(statement.get_attributes())
        return statement, has_rows, await statement.fetch(*args, timeout=backstop_s)

    def discard(self) -> None:
        self._unwatch()
        self._conn.terminate()

    async def close(self) -> None:
        self._unwatch()
        try:
            await self._conn.close(timeout=2)
        except Exception:
            self._conn.terminate()

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None


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


def _statement_error(exc: asyncpg.PostgresError, timeout_ms: int, pooler: Pooler) -> StkError:
    code: str = exc.sqlstate or "XX000"
    if code in ("26000", "42P05") and pooler != "transaction" and "__asyncpg_" in str(exc):
        # One of our named statements is missing, or already there, on the server connection.
        return ServiceUnavailable(_LOST_STATEMENT)
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


def _connect_error(reason: str, checking: bool) -> StkError:
    if checking:
        return BadRequest(f"Connection check failed: {reason}")
    return ServiceUnavailable(f"Tenant database unavailable: {reason}")


def _connect_reason(exc: BaseException, url: str | None, pooler: Pooler) -> str:
    """A reason fit for an operator: fixed words plus, for network errors, host and port."""
    where = f"could not connect to {_address(url)}: " if url else ""
    if isinstance(exc, asyncpg.PostgresError):
        code = exc.sqlstate or ""
        if code == "08P01" and "startup parameter" in str(exc):
            refused = "server refused a startup parameter (SQLSTATE 08P01)"
            if pooler == "none":
                # PgBouncer: "unsupported startup parameter: statement_timeout".
                return (
                    f"{refused}, as connection poolers do; register the connection with"
                    ' "pooler": "transaction" (or "session", the pooler\'s mode)'
                )
            return refused
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
