"""The registry's own engine: a separate pool that never shares a budget with tenants.

Every wait on the registry is bounded (`docs/operations.md`, "Timeouts"): a connect, a command and
a wait for a pooled connection each have their own limit, so an unreachable or blackholed registry
costs a request one bounded wait and then a 503, never a hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite
from sqlalchemy import event, make_url
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

from tenancy.engines.sqlite import opened, private_file
from tenancy.errors import RegistryUnreachable


@dataclass(frozen=True, slots=True)
class RegistryTimeouts:
    """Seconds: opening a connection, one statement, waiting for a free pooled connection."""

    connect: float = 2.0
    command: float = 5.0
    pool_wait: float = 2.0


def create_registry_engine(url: str, timeouts: RegistryTimeouts | None = None) -> AsyncEngine:
    """`timeouts=None` only for schema migrations: an ALTER may legitimately wait for a lock."""
    if url.startswith("sqlite"):
        # SQLite has no network: "connect" and "command" are both waits for the file lock.
        busy = timeouts.command if timeouts else 30.0
        path = make_url(url).database
        if path and path != ":memory:" and not path.startswith("file:"):
            private_file(path)  # every tenant's users and sealed secrets: this user only
        pool: dict[str, Any] = {"pool_timeout": timeouts.pool_wait} if timeouts else {}

        async def _open() -> aiosqlite.Connection:
            """SQLAlchemy's own open (the URL's arguments, a daemon thread), through
            `sqlite.opened` so a failed open leaves no thread behind (`docs/tenancy.md`)."""
            dialect, sync_url = engine.sync_engine.dialect, engine.sync_engine.url
            args, kwargs = dialect.create_connect_args(sync_url)
            pending = aiosqlite.connect(*args, **{**kwargs, "timeout": busy})
            pending._thread.daemon = True  # a connection never closed must not hold up exit
            return await opened(pending)

        engine = create_async_engine(url, async_creator=_open, **pool)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cursor.close()

        return engine
    if timeouts is None:
        return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
    engine = create_async_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeouts.pool_wait,
        # asyncpg: `timeout` bounds the connect (TCP + startup), `command_timeout` every statement
        # on the client side, so it also bounds a registry that accepted and never answers.
        connect_args={"timeout": timeouts.connect, "command_timeout": timeouts.command},
    )
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine, "handle_error", _name_the_failure)
    ping_timeout = timeouts.connect / 2

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        """`pool_pre_ping` would wait the whole command timeout on a blackholed connection and
        then the connect timeout; a short ping leaves one bounded wait (the reconnect)."""
        try:
            await_only(
                dbapi_connection.driver_connection.fetchval("SELECT 1", timeout=ping_timeout)
            )
        except Exception as exc:  # any failure: the pool replaces this connection
            # Closed at once: the pool's own close waits up to 2 s for a goodbye that a
            # blackholed peer never sends.
            dbapi_connection.driver_connection.terminate()
            raise DisconnectionError(f"registry ping failed: {type(exc).__name__}") from exc

    return engine


def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    """asyncpg raises a bare `OSError` / `TimeoutError` on a refused or timed-out connect."""
    try:
        return dialect.loaded_dbapi.connect(*cargs, **cparams)
    except OSError as exc:  # TimeoutError and ConnectionRefusedError included
        raise RegistryUnreachable(f"registry connect failed: {type(exc).__name__}") from exc


def _name_the_failure(context: ExceptionContext) -> Exception | None:
    """A statement that timed out (`command_timeout`) or lost its connection, as
    `RegistryUnreachable`; SQL errors stay what they are."""
    original = context.original_exception
    if isinstance(original, OSError) and not isinstance(
        original, context.dialect.loaded_dbapi.Error
    ):
        driver = context.connection.connection.driver_connection if context.connection else None
        if driver is not None:  # closed at once, as in `_ping`
            driver.terminate()
        return RegistryUnreachable(f"registry statement failed: {type(original).__name__}")
    return None


def session_factory(engine: AsyncEngine, *, autocommit: bool = False) -> async_sessionmaker[Any]:
    """`autocommit` for sessions that only read, each statement on its own: no BEGIN and
    ROLLBACK round trips around them (the engine's pool and limits are shared)."""
    if autocommit:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(engine, expire_on_commit=False)
