"""An Operation → one SQL statement per engine: schema identifiers quoted, values bound.

PostgreSQL takes `$n` placeholders and a list for `IN` (`= ANY($n)`, one prepared statement for
any list length); SQLite takes `?n`, and expansion keys as one JSON array (`json_each`), which
no variable limit caps. SQLite specifics (`docs/crud.md` storage): decimals are TEXT and
compared as numbers; `$like` is case-sensitive through GLOB (SQLite's LIKE ignores ASCII case);
`$ilike` is `LOWER() LIKE LOWER()`; NULLs sort as on PostgreSQL (last ascending, first descending).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from tenancy.cache import Cache
from tenancy.crud.operations import Cond, Delete, Expand, Insert, Operation, Select, Update
from tenancy.releases.model import Column
from tenancy.types import Engine, encoder, quote

_COMPARISONS = frozenset({"=", "<>", ">", ">=", "<", "<="})


class Statement(NamedTuple):
    sql: str
    args: list[Any]


class _Binds:
    """Collects bound values and names their placeholders."""

    __slots__ = ("args", "engine")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.args: list[Any] = []

    def add(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}" if self.engine == "postgresql" else f"?{len(self.args)}"

    def value(self, column: Column, value: Any) -> str:
        """A canonical value of `column`, encoded for the engine."""
        encode = encoder(column, self.engine)
        return self.add(value if value is None or encode is None else encode(value))


def _numeric(column: Column, engine: Engine) -> bool:
    return engine == "sqlite" and column.type == "decimal"


def _operand(column: Column, engine: Engine) -> str:
    name = quote(column.name)
    return f"CAST({name} AS NUMERIC)" if _numeric(column, engine) else name


def _bind(cond: Cond, binds: _Binds) -> list[str]:
    """Bind `cond`'s values (the one place they are bound); their placeholders, in order."""
    op, engine = cond.op, binds.engine
    if op in ("null", "notnull", "false"):
        return []
    if op == "like":
        return [binds.add(cond.value if engine == "postgresql" else like_to_glob(cond.value))]
    if op == "ilike":
        return [binds.add(cond.value)]
    if op in _COMPARISONS:
        return [binds.value(cond.column, cond.value)]
    if engine == "postgresql":  # scalars only, which PostgreSQL binds as they are
        return [binds.add(cond.value)]
    return [binds.value(cond.column, v) for v in cond.value]


def _cond(cond: Cond, marks: list[str], engine: Engine) -> str:
    """`cond` as SQL over the placeholders `_bind` gave it."""
    column, op = cond.column, cond.op
    name = quote(column.name)
    if op == "null":
        return f"{name} IS NULL"
    if op == "notnull":
        return f"{name} IS NOT NULL"
    if op == "false":
        return "1 = 0"
    if op == "like":
        return f"{name} {'LIKE' if engine == 'postgresql' else 'GLOB'} {marks[0]}"
    if op == "ilike":
        if engine == "postgresql":
            return f"{name} ILIKE {marks[0]}"
        return f"LOWER({name}) LIKE LOWER({marks[0]}) ESCAPE '\\'"
    lhs = _operand(column, engine)
    if op in _COMPARISONS:
        return f"{lhs} {op} {_rhs(column, marks[0], engine)}"
    if engine == "postgresql":
        return f"{lhs} {'= ANY' if op == 'in' else '<> ALL'}({marks[0]})"
    listed = ", ".join(_rhs(column, mark, engine) for mark in marks)
    return f"{lhs} {'IN' if op == 'in' else 'NOT IN'} ({listed})"


def _rhs(column: Column, mark: str, engine: Engine) -> str:
    return f"CAST({mark} AS NUMERIC)" if _numeric(column, engine) else mark


def _where(conds: Sequence[Cond], binds: _Binds) -> str:
    return _where_text(conds, [_bind(cond, binds) for cond in conds], binds.engine)


def _where_text(conds: Sequence[Cond], marks: Sequence[list[str]], engine: Engine) -> str:
    if not conds:
        return ""
    return " WHERE " + " AND ".join(
        _cond(cond, cond_marks, engine) for cond, cond_marks in zip(conds, marks, strict=True)
    )


def column_list(columns: Sequence[Column]) -> str:
    return ", ".join(quote(column.name) for column in columns)


def _order(order: Sequence[tuple[Column, bool]], engine: Engine) -> str:
    if not order:
        return ""
    terms = []
    for column, descending in order:
        term = _operand(column, engine) + (" DESC" if descending else " ASC")
        if engine == "sqlite":
            term += " NULLS FIRST" if descending else " NULLS LAST"
        terms.append(term)
    return " ORDER BY " + ", ".join(terms)


def render(plan: Operation, engine: Engine) -> Statement:
    if isinstance(plan, Select):
        return _select(plan, engine)
    binds = _Binds(engine)
    table = quote(plan.table.name)
    if isinstance(plan, Insert):
        returning = f" RETURNING {plan.returning_listing}"
        if not plan.values:
            sql = f"INSERT INTO {table} DEFAULT VALUES{returning}"
        else:
            names = column_list([column for column, _ in plan.values])
            marks = ", ".join(binds.value(column, value) for column, value in plan.values)
            sql = f"INSERT INTO {table} ({names}) VALUES ({marks}){returning}"
    elif isinstance(plan, Update):
        sets = ", ".join(
            f"{quote(column.name)} = {binds.value(column, value)}" for column, value in plan.values
        )
        sql = f"UPDATE {table} SET {sets}{_where(plan.where, binds)}"
    else:
        assert isinstance(plan, Delete)
        sql = f"DELETE FROM {table}{_where(plan.where, binds)}"
    return Statement(sql, binds.args)


# The text of a select by its shape: a select's text is fixed by the engine, table, column list,
# each condition's column, type, operator and number of placeholders, and the order terms; the
# values are bound every time (`docs/decisions.md`, hot path). Bounded far above the shapes any
# set of live releases uses.
SELECTS: Cache[str] = Cache("select_sql", None, max_entries=4096)


def _select(plan: Select, engine: Engine) -> Statement:
    binds = _Binds(engine)
    marks = [_bind(cond, binds) for cond in plan.where]
    limit, offset = binds.add(plan.limit), binds.add(plan.offset)
    key = (
        engine,
        plan.table.name,
        plan.listing,
        tuple(
            [
                (c.column.name, c.column.type, c.op, len(m))
                for c, m in zip(plan.where, marks, strict=True)
            ]
        ),
        tuple([(column.name, column.type, descending) for column, descending in plan.order]),
    )
    sql = SELECTS.lookup(key)
    if sql is None:
        sql = (
            f"SELECT {plan.listing} FROM {quote(plan.table.name)}"
            f"{_where_text(plan.where, marks, engine)}{_order(plan.order, engine)}"
            f" LIMIT {limit} OFFSET {offset}"
        )
        SELECTS.put(key, sql)
    return Statement(sql, binds.args)


def render_expand(expand: Expand, keys: list[Any], engine: Engine) -> Statement:
    """The target rows whose key is one of `keys` (values as the source rows hold them)."""
    binds = _Binds(engine)
    key = quote(expand.key.name)
    if engine == "postgresql":
        match = f"{key} = ANY({binds.add(keys)})"
    elif any(type(k) is bytes for k in keys):
        match = f"{key} IN ({', '.join(binds.add(k) for k in keys)})"
    else:  # one bound JSON array: any number of keys, one statement text
        match = f"{key} IN (SELECT value FROM json_each({binds.add(orjson.dumps(keys).decode())}))"
    filters = "".join(" AND " + _cond(cond, _bind(cond, binds), engine) for cond in expand.filters)
    return Statement(
        f"SELECT {expand.listing} FROM {quote(expand.target.name)} WHERE {match}{filters}",
        binds.args,
    )


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (`%`, `_`, backslash escapes, as PostgreSQL reads it) as a GLOB pattern."""
    out = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            char = next(chars, "\\")
            out.append(f"[{char}]" if char in "*?[" else char)
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        elif char in "*?[":
            out.append(f"[{char}]")
        else:
            out.append(char)
    return "".join(out)
