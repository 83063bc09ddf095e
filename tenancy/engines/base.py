"""What both tenant database drivers share: the connection protocol and its result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

# What sits between the Bridge and a PostgreSQL database (docs/poolers.md): nothing, or a
# connection pooler (PgBouncer, Supavisor...) in session or transaction mode.
Pooler = Literal["none", "session", "transaction"]
POOLERS: tuple[Pooler, ...] = get_args(Pooler)


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


def timeout_message(timeout_ms: int) -> str:
    return f"Statement exceeded the {timeout_ms} ms timeout"


def quoted(name: str | None) -> str:
    """A constraint or column name for an error message, or nothing."""
    return f" '{name}'" if name else ""
