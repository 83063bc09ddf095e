"""Additive schema apply at publish (`docs/project-files.md`, publishing step 4; types:
`tenancy.types`).

The live database is compared with the release's tables and only what is missing is created:
tables, columns, indexes (and the unique index a newly unique column needs). Anything else that
differs is reported, never changed: rewriting a tenant's data is not the Bridge's call. Extra
tables, indexes and foreign keys in the database are left alone; an extra column counts as a
dropped one. Defaults of existing columns are not compared.

Each connection is planned and changed inside one transaction, under a lock (PostgreSQL advisory
lock, SQLite `BEGIN IMMEDIATE`), so concurrent publishers never interleave and a failure leaves
the database as it was. Applying the same release twice plans nothing the second time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from tenancy.engines import Connection, Pooler, connector, engine_of
from tenancy.errors import Conflict, StkError
from tenancy.releases.apply.introspect import LiveSchema, LiveTable, read_live
from tenancy.releases.model import Column, Reference, Table
from tenancy.types import Engine, column_type, default_sql, quote

T = TypeVar("T")
# DDL can wait on the tenant's own locks: bounded, so a publish fails instead of hanging.
STATEMENT_TIMEOUT_MS = 30_000
# Serializes schema apply among publishers sharing one PostgreSQL database ("STKD").
_PG_LOCK = 0x53544B44

# format_type() spellings that hold the same values as the type we would create.
_PG_ALIASES = {
    "character varying": "text",
    "integer": "bigint",
    "smallint": "bigint",
    "json": "jsonb",
    "timestamp with time zone": "timestamptz",
}
_ACTIONS = {"cascade": "CASCADE", "restrict": "RESTRICT", "set_null": "SET NULL"}
_TYPMOD = re.compile(r"\([^)]*\)")


@dataclass
class SchemaChanges:
    """Statements in the order they must run, and what cannot be applied (empty to go ahead)."""

    statements: list[str] = field(default_factory=list)
    differences: list[dict[str, str]] = field(default_factory=list)


async def sync_schema(
    urls: Mapping[str, str],
    tables: Iterable[Table],
    *,
    apply: bool,
    poolers: Mapping[str, Pooler] | None = None,
) -> list[str]:
    """Plan additive DDL for every connection (alias → decrypted URL, and the pooler in front of
    it when not none: `docs/poolers.md`); with `apply`, run it.

    Raises Conflict listing every non-additive difference of every connection; then nothing is
    changed anywhere. Every connection commits only once all their statements ran, so only a
    failing COMMIT can leave one connection changed and another not. Statements are returned
    grouped by alias, aliases in sorted order.
    """
    by_alias: dict[str, dict[str, Table]] = {}
    for table in tables:
        by_alias.setdefault(table.connection, {})[table.name] = table
    async with AsyncExitStack() as stack:
        planned: list[tuple[str, Connection, SchemaChanges]] = []
        for alias in sorted(by_alias):
            url, pooler = urls[alias], (poolers or {}).get(alias, "none")
            engine = engine_of(url)
            conn = await stack.enter_async_context(
                _transaction(alias, url, pooler, engine, write=apply)
            )
            live = await _step(alias, read_live(conn, engine, list(by_alias[alias])))
            planned.append((alias, conn, plan_changes(by_alias[alias], live)))
        differences = [
            {"connection": alias, **difference}
            for alias, _, p in planned
            for difference in p.differences
        ]
        if differences:
            raise Conflict(
                f"Schema change is not additive: {len(differences)} difference(s) "
                "must be resolved by hand",
                details=differences,
            )
        if apply:
            for alias, conn, p in planned:
                for statement in p.statements:
                    await _step(alias, conn.run(statement, ()), statement)
            for alias, conn, _ in planned:
                await _step(alias, conn.run("COMMIT", ()))
        return [statement for _, _, p in planned for statement in p.statements]


@asynccontextmanager
async def _transaction(
    alias: str, url: str, pooler: Pooler, engine: Engine, *, write: bool
) -> AsyncIterator[Connection]:
    """A dedicated connection inside a transaction; closing it rolls back what was not committed.
    Behind a pooler in transaction mode, the transaction keeps one server connection for it."""
    conn = await _step(alias, connector(url, STATEMENT_TIMEOUT_MS, pooler=pooler)())
    try:
        if engine == "sqlite":
            await _step(alias, conn.run("BEGIN IMMEDIATE" if write else "BEGIN", ()))
        else:
            await _step(alias, conn.run("BEGIN" if write else "BEGIN READ ONLY", ()))
            if write:
                await _step(alias, conn.run(f"SELECT pg_advisory_xact_lock({_PG_LOCK})", ()))
        yield conn
    finally:
        await conn.close()


async def _step(alias: str, work: Awaitable[T], statement: str | None = None) -> T:
    """Await `work`, naming the connection (and statement) in any error it raises."""
    try:
        return await work
    except StkError as exc:
        where = f"connection '{alias}'" + (f", while running: {statement}" if statement else "")
        raise type(exc)(f"Schema apply failed on {where}: {exc.message}") from None


# ---- planning -----------------------------------------------------------------------------------


@dataclass
class _Phases:
    tables: list[str] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    differences: list[dict[str, str]] = field(default_factory=list)

    def differ(self, table: str, column: str | None, message: str) -> None:
        where = {"table": table} if column is None else {"table": table, "column": column}
        self.differences.append({**where, "message": message})


def plan_changes(tables: Mapping[str, Table], live: LiveSchema) -> SchemaChanges:
    """What `tables` (all on one connection) need on top of `live`: a pure function."""
    phases = _Phases()
    missing: list[Table] = []
    for name in sorted(tables):
        table = tables[name]
        kind = live.relations.get(live.key(name))
        if kind is None:
            missing.append(table)
        elif kind != "table":
            phases.differ(name, None, f"the name is taken by a {kind} in the database")
        else:
            _compare_table(table, live.tables.get(live.key(name)) or LiveTable(name), live, phases)
    _create_tables(_dependency_order(missing), live, phases)
    for table in (tables[name] for name in sorted(tables)):
        for index in table.indexes:
            _plan_index(table, index.name, index.columns, index.unique, live, phases)
    return SchemaChanges(
        [*phases.tables, *phases.foreign_keys, *phases.columns, *phases.indexes],
        phases.differences,
    )


def _dependency_order(tables: list[Table]) -> list[Table]:
    """Referenced tables first; a cycle is cut where it closes (that key is added afterwards)."""
    by_name = {t.name: t for t in tables}
    done: dict[str, bool] = {}  # False while visiting
    ordered: list[Table] = []

    def visit(table: Table) -> None:
        done[table.name] = False
        for column in table.columns.values():
            target = column.references.table if column.references else None
            if target in by_name and target not in done:
                visit(by_name[target])
        done[table.name] = True
        ordered.append(table)

    for table in tables:
        if table.name not in done:
            visit(table)
    return ordered


def _create_tables(tables: list[Table], live: LiveSchema, phases: _Phases) -> None:
    created: set[str] = set()
    for table in tables:
        definitions = []
        for column in table.columns.values():
            ref = column.references
            # PostgreSQL checks the target exists; SQLite only looks when a row is written.
            later = (
                ref is not None
                and live.engine == "postgresql"
                and ref.table != table.name
                and ref.table not in created
                and live.key(ref.table) not in live.relations
            )
            definitions.append(_column_sql(table, column, live.engine, references=not later))
            if later and ref is not None:
                phases.foreign_keys.append(
                    f"ALTER TABLE {quote(table.name)} ADD FOREIGN KEY ({quote(column.name)}) "
                    + _references_sql(ref)
                )
        phases.tables.append(f"CREATE TABLE {quote(table.name)} ({', '.join(definitions)})")
        created.add(table.name)


def _compare_table(table: Table, found: LiveTable, live: LiveSchema, phases: _Phases) -> None:
    declared = {live.key(name) for name in table.columns}
    for key, extra in found.columns.items():
        if key not in declared:
            phases.differ(
                table.name,
                extra.name,
                "the column exists in the database but not in the schema "
                "(dropping a column is not applied)",
            )
    for column in table.columns.values():
        existing = found.columns.get(live.key(column.name))
        if existing is None:
            _add_column(table, column, live, phases)
            continue
        wanted = column_type(column, live.engine)
        if not _type_matches(column, existing.type, live.engine):
            phases.differ(
                table.name,
                column.name,
                f"type differs: the database has {existing.type or 'no type'}, "
                f"the schema needs {wanted} ({_type_name(column)})",
            )
        if column.name == table.id_column:
            if not existing.primary_key:
                phases.differ(table.name, column.name, "the id column is not the primary key")
            elif table.id_generate == "auto_increment" and not existing.generated:
                phases.differ(
                    table.name, column.name, "auto_increment needs an id the database generates"
                )
            continue
        if not column.nullable and not existing.notnull:
            phases.differ(
                table.name,
                column.name,
                "nullable in the database but NOT NULL in the schema "
                "(tightening nullability is not applied)",
            )
        elif column.nullable and existing.notnull:
            phases.differ(
                table.name, column.name, "NOT NULL in the database but nullable in the schema"
            )
        if column.unique and not live.has_unique(found, (column.name,)):
            _plan_index(table, _unique_name(table, column), (column.name,), True, live, phases)
        if column.references is not None:
            _compare_reference(table, column, column.references, found, live, phases)


def _compare_reference(
    table: Table,
    column: Column,
    ref: Reference,
    found: LiveTable,
    live: LiveSchema,
    phases: _Phases,
) -> None:
    key = (live.key(column.name),)
    fks = [fk for fk in found.foreign_keys if tuple(live.key(c) for c in fk.columns) == key]
    wanted = f"{ref.table}({ref.column})"
    if not fks:
        phases.differ(
            table.name, column.name, f"the foreign key to {wanted} is missing in the database"
        )
        return
    for fk in fks:
        # SQLite leaves out the target column when it is the target's primary key.
        target_ok = live.key(fk.table) == live.key(ref.table) and fk.ref_columns in (
            (live.key(ref.column),),
            (),
        )
        if target_ok and (fk.on_delete, fk.on_update) == (ref.on_delete, ref.on_update):
            return
    fk = fks[0]
    phases.differ(
        table.name,
        column.name,
        f"the foreign key differs: the database has {fk.table}({', '.join(fk.ref_columns)}) "
        f"onDelete {fk.on_delete} onUpdate {fk.on_update}, the schema needs {wanted} "
        f"onDelete {ref.on_delete} onUpdate {ref.on_update}",
    )


def _add_column(table: Table, column: Column, live: LiveSchema, phases: _Phases) -> None:
    problem = None
    if column.name == table.id_column:
        problem = "the id column is missing (changing the primary key is not applied)"
    elif not column.nullable and not column.has_default:
        problem = "a new NOT NULL column needs a default to be added to an existing table"
    elif live.engine == "sqlite" and column.default_now:
        problem = "SQLite cannot add a column with default now to an existing table"
    elif live.engine == "sqlite" and column.references is not None and column.has_default:
        problem = "SQLite cannot add a column with a foreign key and a default to an existing table"
    if problem is not None:
        phases.differ(table.name, column.name, problem)
        return
    inline_unique = live.engine == "postgresql"  # SQLite cannot ADD a UNIQUE column
    phases.columns.append(
        f"ALTER TABLE {quote(table.name)} ADD COLUMN "
        + _column_sql(table, column, live.engine, unique=inline_unique)
    )
    if column.unique and not inline_unique:
        _plan_index(table, _unique_name(table, column), (column.name,), True, live, phases)


def _plan_index(
    table: Table,
    name: str,
    columns: tuple[str, ...],
    unique: bool,
    live: LiveSchema,
    phases: _Phases,
) -> None:
    key = live.key(name)
    index = live.indexes.get(key)
    if index is None and key in live.relations:
        phases.differ(table.name, None, f"index name '{name}' is taken by a {live.relations[key]}")
        return
    if index is None:
        phases.indexes.append(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {quote(name)} "
            f"ON {quote(table.name)} ({', '.join(quote(c) for c in columns)})"
        )
        return
    if live.key(index.table) != live.key(table.name):
        phases.differ(
            table.name, None, f"index name '{name}' is taken by an index of {index.table}"
        )
    elif (
        index.columns != tuple(live.key(c) for c in columns)
        or index.unique != unique
        or not index.plain
    ):
        phases.differ(
            table.name,
            None,
            f"index '{name}' differs: the database has "
            f"{'a unique' if index.unique else 'an'} index on ({', '.join(index.columns)})"
            f"{'' if index.plain else ' with an expression or WHERE'}, the schema needs "
            f"{'a unique' if unique else 'an'} index on ({', '.join(columns)})",
        )


def _unique_name(table: Table, column: Column) -> str:
    """PostgreSQL's own name for a one-column unique constraint (`<table>_<column>_key`)."""
    return f"{table.name}_{column.name}_key"[:63]


# ---- live types (what each engine's own spellings mean; ours are in tenancy.types) -------


def _type_name(column: Column) -> str:
    items, name = column.items, column.type
    while items is not None:
        name += f" of {items.type}"
        items = items.items
    return name


def _type_matches(column: Column, found: str, engine: Engine) -> bool:
    wanted = column_type(column, engine)
    if engine == "sqlite":
        affinity = _affinity(found)
        return affinity == _affinity(wanted) or (column.type == "boolean" and affinity == "NUMERIC")
    base = _TYPMOD.sub("", found)
    depth = 0
    while base.endswith("[]"):
        base, depth = base[:-2], depth + 1
    return _PG_ALIASES.get(base, base) + "[]" * depth == wanted


def _affinity(declared: str) -> str:
    """SQLite's type affinity rules (https://sqlite.org/datatype3.html, 3.1), in their order."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


# ---- SQL text -------------------------------------------------------------------------------


def _column_sql(
    table: Table, column: Column, engine: Engine, *, unique: bool = True, references: bool = True
) -> str:
    parts = [quote(column.name), column_type(column, engine)]
    if column.name == table.id_column:
        if table.id_generate == "auto_increment":
            parts[1:] = (
                ["INTEGER PRIMARY KEY AUTOINCREMENT"]
                if engine == "sqlite"
                else ["bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"]
            )
        else:
            # SQLite lets a non-INTEGER primary key hold NULL unless told otherwise.
            parts.append("NOT NULL PRIMARY KEY" if engine == "sqlite" else "PRIMARY KEY")
        return " ".join(parts)
    if not column.nullable:
        parts.append("NOT NULL")
    if column.has_default:
        parts.append("DEFAULT " + default_sql(column, engine))
    if column.unique and unique:
        parts.append("UNIQUE")
    if column.references is not None and references:
        parts.append(_references_sql(column.references))
    return " ".join(parts)


def _references_sql(ref: Reference) -> str:
    sql = f"REFERENCES {quote(ref.table)} ({quote(ref.column)})"
    if ref.on_delete in _ACTIONS:
        sql += f" ON DELETE {_ACTIONS[ref.on_delete]}"
    if ref.on_update in _ACTIONS:
        sql += f" ON UPDATE {_ACTIONS[ref.on_update]}"
    return sql
