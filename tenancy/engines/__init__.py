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

from collections.abc import Awaitable, Callable

from tenancy.engines import postgresql, sqlite
from tenancy.engines.base import POOLERS, Connection, Pooler, QueryResult
from tenancy.errors import BadRequest
from tenancy.types import Engine

__all__ = [
    "POOLERS",
    "Connection",
    "Pooler",
    "QueryResult",
    "connector",
    "engine_of",
    "verify_url",
]


def engine_of(url: str) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if url.startswith(sqlite.PREFIX):
        sqlite.path_of(url)
        return "sqlite"
    raise BadRequest("Unsupported database URL: expected postgresql://... or sqlite:///path")


def connector(
    url: str, statement_timeout_ms: int, connect_timeout_s: float = 5, pooler: Pooler = "none"
) -> Callable[[], Awaitable[Connection]]:
    """A function opening connections to `url`, each running statements under the timeout.

    `connect_timeout_s` bounds a PostgreSQL connect (a SQLite file opens without a network wait);
    `pooler` is what sits in front of a PostgreSQL server (`docs/poolers.md`).
    """
    if engine_of(url) == "postgresql":
        return lambda: postgresql.PgConnection.open(
            url, statement_timeout_ms, connect_timeout_s, pooler
        )
    path = sqlite.path_of(url)
    return lambda: sqlite.SqliteConnection.open(path, statement_timeout_ms)


async def verify_url(url: str, timeout_s: float = 5, pooler: Pooler = "none") -> Engine:
    """The registration check (connect, run a statement, close); a failure is a BadRequest with a
    sanitized reason."""
    engine = engine_of(url)
    if engine == "sqlite":
        await sqlite.verify(sqlite.path_of(url))
    else:
        await postgresql.verify(url, timeout_s, pooler)
    return engine
