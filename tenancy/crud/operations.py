"""What one CRUD call will do, engine-neutral: checked columns and canonical values, no SQL yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tenancy.releases.model import Column, Table

# "=" ... "<=" compare with `value`; in/nin take a list; like/ilike a pattern; null/notnull and
# false (a row filter no row can satisfy) take none.
CondOp = Literal[
    "=", "<>", ">", ">=", "<", "<=", "in", "nin", "like", "ilike", "null", "notnull", "false"
]


@dataclass(frozen=True, slots=True)
class Cond:
    column: Column
    op: CondOp
    value: Any = None


@dataclass(frozen=True, slots=True)
class Expand:
    """One relation to expand: the source's foreign key and the visible part of the target."""

    name: str
    fk: Column
    target: Table
    key: Column
    columns: tuple[Column, ...]
    listing: str  # `columns` and, when not among them, `key`, quoted
    filters: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Select:
    table: Table
    columns: tuple[Column, ...]
    hidden: tuple[Column, ...]  # foreign keys fetched only to expand, dropped from the rows
    listing: str  # `columns` and `hidden`, quoted (cached per release for the default list)
    where: tuple[Cond, ...]
    order: tuple[tuple[Column, bool], ...]  # (column, descending)
    limit: int
    offset: int
    expand: tuple[Expand, ...]


@dataclass(frozen=True, slots=True)
class Insert:
    table: Table
    values: tuple[tuple[Column, Any], ...]
    returning: tuple[Column, ...]
    returning_listing: str


@dataclass(frozen=True, slots=True)
class Update:
    table: Table
    values: tuple[tuple[Column, Any], ...]
    where: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    table: Table
    where: tuple[Cond, ...]


Operation = Select | Insert | Update | Delete
