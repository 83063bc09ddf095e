"""What a tenant database holds now: tables, columns, keys and indexes, as schema apply sees them.

Read from the catalogs (PostgreSQL `pg_catalog`, in the current schema: where unqualified names
resolve) or from PRAGMAs (SQLite). Names are kept as the database spells them; `key` folds them the
way the engine compares them, since SQLite names are case-insensitive.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from tenancy.engines import Connection
from tenancy.types import Engine

# pg_class.relkind → what a name is taken by (anything else: "relation").
_PG_KINDS = {"r": "table", "p": "table", "v": "view", "m": "view", "i": "index", "I": "index"}
# pg_constraint.confdeltype / confupdtype → schema action names.
_PG_ACTIONS = {
    "a": "no_action",
    "r": "restrict",
    "c": "cascade",
    "n": "set_null",
    "d": "set_default",
}

_PG_RELATIONS = """
SELECT c.relname AS name, c.relkind::text AS kind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
"""
_PG_COLUMNS = """
SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS notnull,
       (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false))
         AS generated
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
_PG_CONSTRAINTS = """
SELECT c.relname AS table, con.contype::text AS kind,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.ord)::text[] AS columns,
       r.relname AS ref_table,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
             ORDER BY k.ord)::text[] AS ref_columns,
       con.confdeltype::text AS on_delete, con.confupdtype::text AS on_update
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
WHERE n.nspname = current_schema() AND con.contype IN ('p', 'f')
"""
_PG_INDEXES = """
SELECT ic.relname AS name, c.relname AS table, i.indisunique AS unique,
       (i.indexprs IS NULL AND i.indpred IS NULL) AS plain,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)::text[] AS columns
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
"""


@dataclass(frozen=True, slots=True)
class LiveColumn:
    name: str
    type: str  # format_type() on PostgreSQL, the declared type on SQLite
    notnull: bool
    primary_key: bool  # the table's primary key is this column alone
    generated: bool  # the database fills it in (identity, serial, SQLite rowid alias)


@dataclass(frozen=True, slots=True)
class LiveForeignKey:
    columns: tuple[str, ...]
    table: str
    ref_columns: tuple[str, ...]  # empty: the referenced table's primary key (SQLite)
    on_delete: str
    on_update: str


@dataclass(frozen=True, slots=True)
class LiveIndex:
    name: str
    table: str
    columns: tuple[str, ...]  # folded; only read for indexes of the compared tables
    unique: bool
    plain: bool  # no expression, no WHERE: only a plain index can stand for a declared one


@dataclass
class LiveTable:
    name: str
    columns: dict[str, LiveColumn] = field(default_factory=dict)  # by key, in table order
    foreign_keys: list[LiveForeignKey] = field(default_factory=list)


@dataclass
class LiveSchema:
    engine: Engine
    relations: dict[str, str]  # key → "table", "view", "index", ... (names share one namespace)
    tables: dict[str, LiveTable]  # by key; only the tables asked for
    indexes: dict[str, LiveIndex]  # by key

    def key(self, name: str) -> str:
        return name.lower() if self.engine == "sqlite" else name

    def has_unique(self, table: LiveTable, columns: tuple[str, ...]) -> bool:
        """Whether a plain unique index (or constraint) covers exactly `columns`."""
        folded = tuple(self.key(c) for c in columns)
        return any(
            index.unique and index.plain and index.columns == folded
            for index in self.indexes.values()
            if self.key(index.table) == self.key(table.name)
        )


async def read_live(conn: Connection, engine: Engine, tables: Collection[str]) -> LiveSchema:
    """The current shape of `tables` (those that exist) and every name already taken."""
    if engine == "postgresql":
        return await _read_pg(conn, tables)
    return await _read_sqlite(conn, tables)


async def _rows(conn: Connection, sql: str, *args: object) -> list[dict[str, object]]:
    return (await conn.run(sql, args)).rows or []


async def _read_pg(conn: Connection, wanted: Collection[str]) -> LiveSchema:
    live = LiveSchema("postgresql", {}, {}, {})
    for row in await _rows(conn, _PG_RELATIONS):
        live.relations[str(row["name"])] = _PG_KINDS.get(str(row["kind"]), "relation")
    primary: dict[str, tuple[str, ...]] = {}
    for row in await _rows(conn, _PG_CONSTRAINTS):
        table, columns = str(row["table"]), tuple(_strings(row["columns"]))
        if row["kind"] == "p":
            primary[table] = columns
        elif table in wanted:
            live.tables.setdefault(table, LiveTable(table)).foreign_keys.append(
                LiveForeignKey(
                    columns,
                    str(row["ref_table"]),
                    tuple(_strings(row["ref_columns"])),
                    _PG_ACTIONS.get(str(row["on_delete"]), "no_action"),
                    _PG_ACTIONS.get(str(row["on_update"]), "no_action"),
                )
            )
    for row in await _rows(conn, _PG_COLUMNS):
        table, name = str(row["table"]), str(row["name"])
        if table not in wanted:
            continue
        live.tables.setdefault(table, LiveTable(table)).columns[name] = LiveColumn(
            name,
            str(row["type"]),
            bool(row["notnull"]),
            primary.get(table) == (name,),
            bool(row["generated"]),
        )
    for row in await _rows(conn, _PG_INDEXES):
        name = str(row["name"])
        live.indexes[name] = LiveIndex(
            name,
            str(row["table"]),
            tuple(_strings(row["columns"])),
            bool(row["unique"]),
            bool(row["plain"]),
        )
    return live


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


async def _read_sqlite(conn: Connection, wanted: Collection[str]) -> LiveSchema:
    live = LiveSchema("sqlite", {}, {}, {})
    wanted_keys = {name.lower() for name in wanted}
    master = await _rows(
        conn,
        "SELECT type, name, tbl_name FROM sqlite_master "
        "WHERE type IN ('table', 'view', 'index') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    for row in master:
        live.relations[str(row["name"]).lower()] = str(row["type"])
        if row["type"] == "index":
            live.indexes[str(row["name"]).lower()] = LiveIndex(
                str(row["name"]), str(row["tbl_name"]), (), unique=False, plain=False
            )
    for row in master:
        name = str(row["name"])
        if row["type"] == "table" and name.lower() in wanted_keys:
            live.tables[name.lower()] = await _sqlite_table(conn, live, name)
    return live


async def _sqlite_table(conn: Connection, live: LiveSchema, name: str) -> LiveTable:
    table = LiveTable(name)
    info = await _rows(conn, 'SELECT name, type, "notnull", pk FROM pragma_table_info(?)', name)
    single_pk = sum(1 for row in info if row["pk"]) == 1
    for row in info:
        declared = str(row["type"] or "")
        primary = bool(row["pk"]) and single_pk
        table.columns[str(row["name"]).lower()] = LiveColumn(
            str(row["name"]),
            declared,
            bool(row["notnull"]),
            primary,
            primary and declared.upper() == "INTEGER",  # an alias of the rowid
        )
    keys = await _rows(
        conn,
        'SELECT id, "from", "table", "to", on_update, on_delete '
        "FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        name,
    )
    grouped: dict[object, list[dict[str, object]]] = {}
    for row in keys:
        grouped.setdefault(row["id"], []).append(row)
    for parts in grouped.values():
        first = parts[0]
        table.foreign_keys.append(
            LiveForeignKey(
                tuple(str(p["from"]).lower() for p in parts),
                str(first["table"]),
                tuple(str(p["to"]).lower() for p in parts if p["to"] is not None),
                _sqlite_action(first["on_delete"]),
                _sqlite_action(first["on_update"]),
            )
        )
    for row in await _rows(conn, 'SELECT name, "unique", partial FROM pragma_index_list(?)', name):
        columns = await _rows(
            conn, "SELECT name FROM pragma_index_info(?) ORDER BY seqno", row["name"]
        )
        names = [c["name"] for c in columns]
        live.indexes[str(row["name"]).lower()] = LiveIndex(
            str(row["name"]),
            name,
            tuple(str(c).lower() for c in names),
            bool(row["unique"]),
            not row["partial"] and None not in names,
        )
    return table


def _sqlite_action(value: object) -> str:
    return str(value or "NO ACTION").lower().replace(" ", "_")
