"""`schema/*.yaml` → the canonical tables of a release (`docs/project-files.md`, types from
`docs/crud.md`).

Problems the database would only report at DDL time (a foreign key to a non-unique column, a type
mismatch across a reference, a name SQLite treats as a duplicate) are reported here, at publish.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tenancy import ids
from tenancy.releases.compile.sources import Problems, YamlList, YamlMap, check_keys, load_yaml
from tenancy.types import COLUMN_TYPES, SCALAR_TYPES, items_of, literal_problem

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ID_POLICIES = ("ulid", "uuid_v4", "uuid_v7", "nanoid", "auto_increment", "client")
ID_TYPES = {"ulid": "string", "uuid_v4": "uuid", "uuid_v7": "uuid", "nanoid": "string"}
CLIENT_ID_TYPES = ("string", "int", "bigint", "uuid")
REF_ACTIONS = ("cascade", "restrict", "set_null", "no_action")
_TABLE_KEYS = ("connection", "id", "columns", "indexes")
_COLUMN_KEYS = ("type", "items", "nullable", "unique", "default", "references")
_REF_KEYS = ("table", "column", "as", "onDelete", "onUpdate")
_INTEGERS = frozenset({"int", "bigint"})


@dataclass
class _TableSource:
    """Where a table was defined, and the bits the cross-table checks need."""

    file: str
    line: int
    body: dict[str, Any]
    ref_lines: dict[str, int] = field(default_factory=dict)
    index_lines: list[int] = field(default_factory=list)


@dataclass
class CompiledSchema:
    """Canonical tables by name, and the names (`t`, `t.col`) whose definition had a problem.

    Later checks skip what is already broken, so one typo is reported once, not once per use.
    """

    tables: dict[str, dict[str, Any]]
    broken: set[str]


def compile_schema(
    files: list[tuple[str, str]], problems: Problems, connections: Collection[str] | None
) -> CompiledSchema:
    """Validate every schema file."""
    sources: dict[str, _TableSource] = {}
    broken: set[str] = set()
    folded: dict[str, str] = {}
    for file, text in sorted(files):
        data = load_yaml(text, file, problems)
        if data is None:
            continue
        if not isinstance(data, YamlMap):
            problems.add(file, "a schema file must be a mapping with `tables`", 1)
            continue
        check_keys(data, ("version", "tables"), file, problems, "schema file")
        if "version" in data and data["version"] != 1:
            problems.add(file, "version must be 1", data.line_of("version"))
        tables = data.get("tables")
        if tables is None:
            continue
        if not isinstance(tables, YamlMap):
            problems.add(
                file, "`tables` must be a mapping of table name → table", data.line_of("tables")
            )
            continue
        for name, spec in tables.items():
            line = tables.line_of(name)
            if not _identifier(name, "table", file, line, problems):
                continue
            if name in sources:
                problems.add(
                    file, f"table '{name}' is already defined in {sources[name].file}", line
                )
                continue
            if name.lower() in folded:
                problems.add(
                    file,
                    f"table '{name}' collides with '{folded[name.lower()]}' "
                    "(names are case-insensitive in SQLite)",
                    line,
                )
                continue
            folded[name.lower()] = name
            table = _compile_table(name, spec, file, line, problems, connections, broken)
            if table is None:
                broken.add(name)
            else:
                sources[name] = table
    _check_references(sources, problems, broken)
    _check_index_names(sources, problems)
    return CompiledSchema({name: src.body for name, src in sources.items()}, broken)


def _identifier(name: object, what: str, file: str, line: int, problems: Problems) -> bool:
    if isinstance(name, str) and IDENTIFIER.fullmatch(name):
        return True
    problems.add(
        file, f"invalid {what} name {name!r} (letters, digits, _; not starting with a digit)", line
    )
    return False


def _compile_table(
    name: str,
    spec: Any,
    file: str,
    line: int,
    problems: Problems,
    connections: Collection[str] | None,
    broken: set[str],
) -> _TableSource | None:
    if not isinstance(spec, YamlMap):
        problems.add(file, f"table '{name}' must be a mapping", line)
        return None
    check_keys(spec, _TABLE_KEYS, file, problems, f"table '{name}'")
    connection = spec.get("connection", "main")
    conn_line = spec.line_of("connection")
    if not ids.is_alias(connection):
        problems.add(file, f"table '{name}': invalid connection alias {connection!r}", conn_line)
    elif connections is not None and connection not in connections:
        problems.add(
            file,
            f"table '{name}': connection '{connection}' is not configured for this env",
            conn_line,
        )
    src = _TableSource(file, line, {"connection": connection})
    id_column = _compile_id(name, spec, file, problems)
    src.body["id"] = {"name": id_column["name"], "generate": id_column.pop("generate")}
    columns = [id_column]
    raw_columns = spec.get("columns", YamlMap())
    if not isinstance(raw_columns, YamlMap):
        problems.add(file, f"table '{name}': `columns` must be a mapping", spec.line_of("columns"))
        raw_columns = YamlMap()
    folded = {id_column["name"].lower(): id_column["name"]}
    for col_name, col_spec in raw_columns.items():
        col_line = raw_columns.line_of(col_name)
        if not _identifier(col_name, "column", file, col_line, problems):
            continue
        if col_name.lower() in folded:
            other = folded[col_name.lower()]
            why = "the id column" if other == id_column["name"] else f"column '{other}'"
            problems.add(file, f"table '{name}': column '{col_name}' collides with {why}", col_line)
            continue
        folded[col_name.lower()] = col_name
        column = _compile_column(f"{name}.{col_name}", col_spec, file, col_line, problems)
        if column is None:
            broken.add(f"{name}.{col_name}")
        else:
            column["name"] = col_name
            columns.append(column)
            if column["references"] is not None:
                src.ref_lines[col_name] = col_line
    src.body["columns"] = columns
    src.body["indexes"] = _compile_indexes(name, spec, columns, file, problems, src, broken)
    return src


def _compile_id(table: str, spec: YamlMap, file: str, problems: Problems) -> dict[str, Any]:
    raw = spec.get("id", YamlMap())
    line = spec.line_of("id")
    column: dict[str, Any] = _column_body("string", nullable=False)
    column.update(name="id", generate="ulid")
    if not isinstance(raw, YamlMap):
        problems.add(file, f"table '{table}': `id` must be a mapping {{name, generate}}", line)
        return column
    check_keys(raw, ("name", "generate", "type"), file, problems, f"table '{table}' id")
    name = raw.get("name", "id")
    if _identifier(name, "id column", file, raw.line_of("name"), problems):
        column["name"] = name
    generate = raw.get("generate", "ulid")
    if generate not in ID_POLICIES:
        problems.add(
            file,
            f"table '{table}': id generate must be one of {', '.join(ID_POLICIES)}",
            raw.line_of("generate"),
        )
        generate = "ulid"
    column["generate"] = generate
    if generate == "auto_increment":
        column["type"] = "bigint"
    elif generate == "client":
        id_type = raw.get("type", "string")
        if id_type not in CLIENT_ID_TYPES:
            problems.add(
                file,
                f"table '{table}': a client id type must be one of {', '.join(CLIENT_ID_TYPES)}",
                raw.line_of("type"),
            )
            id_type = "string"
        column["type"] = id_type
    else:
        column["type"] = ID_TYPES[generate]
    if "type" in raw and generate != "client":
        problems.add(
            file,
            f"table '{table}': id `type` is only allowed with generate: client",
            raw.line_of("type"),
        )
    return column


def _column_body(col_type: str, *, nullable: bool) -> dict[str, Any]:
    return {
        "type": col_type,
        "items": None,
        "nullable": nullable,
        "unique": False,
        "default": None,
        "references": None,
    }


def _compile_column(
    where: str, spec: Any, file: str, line: int, problems: Problems
) -> dict[str, Any] | None:
    if not isinstance(spec, YamlMap):
        problems.add(file, f"column '{where}' must be a mapping with at least `type`", line)
        return None
    check_keys(spec, _COLUMN_KEYS, file, problems, f"column '{where}'")
    col_type = spec.get("type")
    if col_type not in COLUMN_TYPES:
        hint = " (did you mean boolean?)" if col_type == "bool" else ""
        problems.add(
            file,
            f"column '{where}': type must be one of {', '.join(COLUMN_TYPES)}{hint}",
            spec.line_of("type"),
        )
        return None
    column = _column_body(col_type, nullable=True)
    for flag in ("nullable", "unique"):
        if flag in spec:
            if isinstance(spec[flag], bool):
                column[flag] = spec[flag]
            else:
                problems.add(
                    file, f"column '{where}': {flag} must be true or false", spec.line_of(flag)
                )
    if col_type == "array":
        column["items"] = _compile_items(
            where, spec.get("items"), file, spec.line_of("items"), problems
        )
        if column["items"] is None:
            return None
    elif "items" in spec:
        problems.add(
            file, f"column '{where}': `items` is only for type array", spec.line_of("items")
        )
    if spec.get("default") is not None:
        message = literal_problem(
            spec["default"], col_type, items_of(column["items"]), allow_now=True
        )
        if message:
            problems.add(
                file, f"column '{where}': invalid default: {message}", spec.line_of("default")
            )
        elif col_type == "timestamp" and spec["default"] == "now":
            column["default"] = {"kind": "now"}
        else:
            value = float(spec["default"]) if col_type == "float" else spec["default"]
            column["default"] = {"kind": "literal", "value": value}
    if "references" in spec:
        column["references"] = _compile_reference(
            where, spec["references"], column, file, spec.line_of("references"), problems
        )
    return column


def _compile_items(
    where: str, raw: Any, file: str, line: int, problems: Problems
) -> dict[str, Any] | None:
    raw_type: Any
    if isinstance(raw, str):
        raw_type, nested = raw, None
    elif isinstance(raw, YamlMap):
        check_keys(raw, ("type", "items"), file, problems, f"items of '{where}'")
        raw_type, nested = raw.get("type"), raw.get("items")
        line = raw.line_of("type")
    else:
        problems.add(file, f"column '{where}': an array needs `items` (a type)", line)
        return None
    if raw_type == "array":
        inner = _compile_items(where, nested, file, line, problems)
        return None if inner is None else {"type": "array", "items": inner}
    if raw_type not in SCALAR_TYPES:
        problems.add(
            file, f"column '{where}': items must be one of {', '.join(COLUMN_TYPES)}", line
        )
        return None
    if nested is not None:
        problems.add(file, f"column '{where}': `items` is only for type array", line)
    return {"type": raw_type}


def _compile_reference(
    where: str, raw: Any, column: dict[str, Any], file: str, line: int, problems: Problems
) -> dict[str, Any] | None:
    if not isinstance(raw, YamlMap) or "table" not in raw:
        problems.add(file, f"column '{where}': references must be a mapping with `table`", line)
        return None
    check_keys(raw, _REF_KEYS, file, problems, f"references of '{where}'")
    ref: dict[str, Any] = {
        "table": raw["table"],
        "column": raw.get("column"),
        "as": raw.get("as"),
        "onDelete": raw.get("onDelete", "no_action"),
        "onUpdate": raw.get("onUpdate", "no_action"),
    }
    ok = _identifier(ref["table"], "referenced table", file, raw.line_of("table"), problems)
    if ref["column"] is not None:
        ok &= _identifier(ref["column"], "referenced column", file, raw.line_of("column"), problems)
    if ref["as"] is not None:
        ok &= _identifier(ref["as"], "relation (`as`)", file, raw.line_of("as"), problems)
    for key in ("onDelete", "onUpdate"):
        if ref[key] not in REF_ACTIONS:
            problems.add(
                file,
                f"column '{where}': {key} must be one of {', '.join(REF_ACTIONS)}",
                raw.line_of(key),
            )
            ok = False
    if "set_null" in (ref["onDelete"], ref["onUpdate"]) and not column["nullable"]:
        problems.add(file, f"column '{where}': set_null needs a nullable column", line)
        ok = False
    if column["type"] in ("array", "json"):
        problems.add(
            file, f"column '{where}': a {column['type']} column cannot reference a table", line
        )
        ok = False
    return ref if ok else None


def _compile_indexes(
    table: str,
    spec: YamlMap,
    columns: list[dict[str, Any]],
    file: str,
    problems: Problems,
    src: _TableSource,
    broken: set[str],
) -> list[dict[str, Any]]:
    raw = spec.get("indexes", YamlList())
    if not isinstance(raw, YamlList):
        problems.add(file, f"table '{table}': `indexes` must be a list", spec.line_of("indexes"))
        return []
    names = {c["name"] for c in columns}
    out = []
    for i, item in enumerate(raw):
        line = raw.line_of(i)
        if not isinstance(item, YamlMap):
            problems.add(
                file, f"table '{table}': an index must be a mapping {{columns, unique}}", line
            )
            continue
        check_keys(item, ("columns", "unique", "name"), file, problems, f"index of '{table}'")
        cols = item.get("columns")
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            problems.add(file, f"table '{table}': index `columns` must be a non-empty list", line)
            continue
        ok = True
        for col in cols:
            if col not in names:
                if f"{table}.{col}" not in broken:
                    problems.add(file, f"table '{table}': index on unknown column '{col}'", line)
                ok = False
        if len(set(cols)) != len(cols):
            problems.add(file, f"table '{table}': index lists a column twice", line)
            ok = False
        unique = item.get("unique", False)
        if not isinstance(unique, bool):
            problems.add(file, f"table '{table}': index `unique` must be true or false", line)
            ok = False
        name = item.get("name")
        if name is None:
            name = _index_name(table, cols)
        elif not _identifier(name, "index", file, item.line_of("name"), problems):
            ok = False
        if ok:
            out.append({"name": name, "columns": list(cols), "unique": unique})
            src.index_lines.append(line)
    return out


def _index_name(table: str, columns: list[str]) -> str:
    name = f"{table}_{'_'.join(columns)}_idx"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:50]}_{digest}_idx"


def _check_references(
    sources: dict[str, _TableSource], problems: Problems, broken: set[str]
) -> None:
    for name, src in sources.items():
        relations: dict[str, str] = {}
        column_names = {c["name"] for c in src.body["columns"]}
        for column in src.body["columns"]:
            ref = column["references"]
            if ref is None:
                continue
            line = src.ref_lines[column["name"]]
            where = f"column '{name}.{column['name']}'"
            target = sources.get(ref["table"])
            if ref["as"] is not None:
                if ref["as"] in relations:
                    problems.add(
                        src.file,
                        f"{where}: relation name '{ref['as']}' is already used by "
                        f"'{relations[ref['as']]}'",
                        line,
                    )
                elif ref["as"] in column_names:
                    problems.add(
                        src.file, f"{where}: relation name '{ref['as']}' is also a column", line
                    )
                relations[ref["as"]] = column["name"]
            if target is None:
                if ref["table"] not in broken:
                    problems.add(
                        src.file, f"{where}: references unknown table '{ref['table']}'", line
                    )
                continue
            target_id = target.body["id"]["name"]
            ref["column"] = ref["column"] or target_id
            by_name = {c["name"]: c for c in target.body["columns"]}
            target_col = by_name.get(ref["column"])
            if target_col is None:
                if f"{ref['table']}.{ref['column']}" in broken:
                    continue
                problems.add(
                    src.file,
                    f"{where}: references unknown column '{ref['table']}.{ref['column']}'",
                    line,
                )
                continue
            unique_index = any(
                ix["unique"] and ix["columns"] == [ref["column"]] for ix in target.body["indexes"]
            )
            if ref["column"] != target_id and not target_col["unique"] and not unique_index:
                problems.add(
                    src.file,
                    f"{where}: '{ref['table']}.{ref['column']}' must be the id or a unique column",
                    line,
                )
            if not _same_type(column, target_col):
                problems.add(
                    src.file,
                    f"{where}: type {column['type']} does not match "
                    f"'{ref['table']}.{ref['column']}' ({target_col['type']})",
                    line,
                )
            if target.body["connection"] != src.body["connection"]:
                problems.add(
                    src.file,
                    f"{where}: references '{ref['table']}' on another connection "
                    f"({target.body['connection']}); foreign keys stay on one connection",
                    line,
                )


def _same_type(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["type"] == b["type"] or {a["type"], b["type"]} <= _INTEGERS


def _check_index_names(sources: dict[str, _TableSource], problems: Problems) -> None:
    """PostgreSQL keeps tables and indexes in one namespace per schema: names must not clash."""
    taken = {
        (src.body["connection"], name.lower()): f"table '{name}'" for name, src in sources.items()
    }
    for name, src in sources.items():
        for index, line in zip(src.body["indexes"], src.index_lines, strict=True):
            key = (src.body["connection"], index["name"].lower())
            if key in taken:
                problems.add(
                    src.file,
                    f"table '{name}': index name '{index['name']}' clashes with {taken[key]}",
                    line,
                )
            taken[key] = f"index '{index['name']}' of '{name}'"
