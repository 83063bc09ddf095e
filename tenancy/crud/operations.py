"""What one CRUD call will do, engine-neutral: checked columns and canonical values, no SQL yet.

Named tuples, not frozen dataclasses: each call builds several of these, and a frozen
dataclass's `__init__` sets every field through `object.__setattr__` (twice the CPU;
`docs/decisions.md`, hot path).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from tenancy.releases.model import Column, Table

# "=" ... "<=" compare with `value`; in/nin take a list; like/ilike a pattern; null/notnull and
# false (a row filter no row can satisfy) take none.
CondOp = Literal[
    "=", "<>", ">", ">=", "<", "<=", "in", "nin", "like", "ilike", "null", "notnull", "false"
]


class Cond(NamedTuple):
    column: Column
    op: CondOp
    value: Any = None


class Expand(NamedTuple):
    """One relation to expand: the source's foreign key and the visible part of the target."""

    name: str
    fk: Column
    target: Table
    key: Column
    columns: tuple[Column, ...]
    listing: str  # `columns` and, when not among them, `key`, quoted
    filters: tuple[Cond, ...]


class Select(NamedTuple):
    table: Table
    columns: tuple[Column, ...]
    hidden: tuple[Column, ...]  # foreign keys fetched only to expand, dropped from the rows
    listing: str  # `columns` and `hidden`, quoted (cached per release for the default list)
    where: tuple[Cond, ...]
    order: tuple[tuple[Column, bool], ...]  # (column, descending)
    limit: int
    offset: int
    expand: tuple[Expand, ...]


class Insert(NamedTuple):
    table: Table
    values: tuple[tuple[Column, Any], ...]
    returning: tuple[Column, ...]
    returning_listing: str


class Update(NamedTuple):
    table: Table
    values: tuple[tuple[Column, Any], ...]
    where: tuple[Cond, ...]


class Delete(NamedTuple):
    table: Table
    where: tuple[Cond, ...]


Operation = Select | Insert | Update | Delete
