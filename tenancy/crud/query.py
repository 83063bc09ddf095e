"""Caller params → checked columns, conditions and values (`docs/crud.md`); every failure is a 400.

Caller text is only ever used as a key into the schema: what reaches SQL is the schema's own
column objects and canonical values. Permissions are not looked at here (they come later in the
pipeline, `docs/api.md`), so a malformed request is a 400 whoever sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from tenancy.crud.operations import Cond, CondOp
from tenancy.errors import BadRequest
from tenancy.releases.model import Column, Table
from tenancy.types import INT64_MAX, UNORDERED, Invalid, canonical, invalid, write_value

MAX_IN = 1000
_PARAMS = {
    "select": frozenset({"where", "select", "orderBy", "limit", "offset", "expand"}),
    "insert": frozenset({"data", "values"}),
    "update": frozenset({"data", "values", "where"}),
    "delete": frozenset({"where"}),
}
_COMPARE: dict[str, CondOp] = {
    "$eq": "=",
    "$ne": "<>",
    "$gt": ">",
    "$gte": ">=",
    "$lt": "<",
    "$lte": "<=",
}
_LISTS: dict[str, CondOp] = {"$in": "in", "$nin": "nin"}
_PATTERNS: dict[str, CondOp] = {"$like": "like", "$ilike": "ilike"}


def shown(name: object) -> str:
    """Caller text quoted back in a message, cut short."""
    text = str(name)
    return text if len(text) <= 64 else text[:61] + "..."


def check_params(op: str, params: Mapping[str, Any]) -> None:
    allowed = _PARAMS[op]
    for key in params:
        if key not in allowed:
            raise BadRequest(f"Unknown param '{shown(key)}' for {op}")


def column_of(table: Table, name: object, where: str) -> Column:
    column = table.columns.get(name) if type(name) is str else None
    if column is None:
        raise BadRequest(f"Unknown column '{shown(name)}' in {where}")
    return column


# ---- where ------------------------------------------------------------------------------------


def parse_where(table: Table, raw: Any, *, required: bool) -> tuple[Cond, ...]:
    if raw is None and not required:
        return ()
    if not isinstance(raw, dict):
        raise BadRequest("where must be an object")
    if required and not raw:
        raise BadRequest("where is required and must not be empty")
    conds: list[Cond] = []
    for name, value in raw.items():
        if type(name) is str and name.startswith("$"):
            raise BadRequest(f"Operator '{shown(name)}' is not allowed at the top level of where")
        column = column_of(table, name, "where")
        if isinstance(value, dict):
            if not value:
                raise BadRequest(f"Empty operator object for column '{column.name}' in where")
            for op, operand in value.items():
                conds.append(_operator(column, op, operand))
        else:
            conds.append(_compare(column, "$eq", value))
    return tuple(conds)


def _operator(column: Column, op: Any, operand: Any) -> Cond:
    if op in _COMPARE:
        return _compare(column, op, operand)
    if op in _LISTS:
        return _list(column, op, operand)
    if op in _PATTERNS:
        return _pattern(column, op, operand)
    if op == "$null":
        if type(operand) is not bool:
            raise BadRequest(f"$null for column '{column.name}' must be true or false")
        return Cond(column, "null" if operand else "notnull")
    raise BadRequest(f"Unknown operator '{shown(op)}' for column '{column.name}' in where")


def _compare(column: Column, op: str, value: Any) -> Cond:
    if value is None:
        if op in ("$eq", "$ne"):
            return Cond(column, "null" if op == "$eq" else "notnull")
        raise BadRequest(f"{op} for column '{column.name}' needs a value, not null")
    _comparable(column, op)
    return Cond(column, _COMPARE[op], _scalar(column, value))


def _list(column: Column, op: str, value: Any) -> Cond:
    if type(value) is not list or not value:
        raise BadRequest(f"{op} for column '{column.name}' needs a non-empty array")
    if len(value) > MAX_IN:
        raise BadRequest(f"{op} for column '{column.name}' takes at most {MAX_IN} values")
    _comparable(column, op)
    items = []
    for item in value:
        if item is None:
            raise BadRequest(f"{op} for column '{column.name}' cannot contain null (use $null)")
        items.append(_scalar(column, item))
    return Cond(column, _LISTS[op], items)


def _pattern(column: Column, op: str, value: Any) -> Cond:
    if column.type != "string":
        raise BadRequest(f"{op} needs a string column; '{column.name}' is {column.type}")
    if type(value) is not str:
        raise BadRequest(f"{op} for column '{column.name}' needs a string pattern")
    if "\x00" in value or (len(value) - len(value.rstrip("\\"))) % 2:
        raise BadRequest(f"Invalid {op} pattern for column '{column.name}'")
    return Cond(column, _PATTERNS[op], value)


def _comparable(column: Column, op: str) -> None:
    if column.type in UNORDERED:
        raise BadRequest(f"Column '{column.name}' ({column.type}) can only be tested with $null")


def _scalar(column: Column, value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise BadRequest(f"Column '{column.name}' in where needs a scalar, not an array or object")
    try:
        return canonical(column, value)
    except Invalid as exc:
        raise invalid(column, exc, "where") from None


# ---- select ------------------------------------------------------------------------------------


class SelectParams(NamedTuple):
    columns: tuple[Column, ...] | None  # None: every column the rule allows
    where: tuple[Cond, ...]
    order: tuple[tuple[Column, bool], ...]
    limit: int
    offset: int
    expand: tuple[Column, ...]  # the foreign-key columns of the named relations


def parse_select(table: Table, params: Mapping[str, Any], max_rows: int) -> SelectParams:
    check_params("select", params)
    get = params.get
    select, where, order = get("select"), get("where"), get("orderBy")
    limit, offset, expand = get("limit"), get("offset"), get("expand")
    # What a request leaves out is not parsed (each part is a call or more).
    return SelectParams(
        None if select is None else _columns(table, select),
        () if where is None else parse_where(table, where, required=False),
        () if order is None else _order(table, order),
        max_rows if limit is None else _count(limit, "limit", max_rows, max_rows),
        0 if offset is None else _count(offset, "offset", 0, INT64_MAX),
        () if expand is None else _expand(table, expand),
    )


def _names(raw: Any, what: str) -> list[str]:
    if type(raw) is not list or any(type(name) is not str for name in raw):
        raise BadRequest(f"{what} must be an array of names")
    return list(dict.fromkeys(raw))


def _columns(table: Table, raw: Any) -> tuple[Column, ...] | None:
    if raw is None:
        return None
    names = _names(raw, "select")
    if not names:
        raise BadRequest("select must not be empty")
    return tuple(column_of(table, name, "select") for name in names)


def _order(table: Table, raw: Any) -> tuple[tuple[Column, bool], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise BadRequest("orderBy must be an object of column → asc | desc")
    order = []
    for name, direction in raw.items():
        column = column_of(table, name, "orderBy")
        if column.type in UNORDERED:
            raise BadRequest(f"Cannot order by column '{column.name}' ({column.type})")
        lowered = direction.lower() if type(direction) is str else None
        if lowered not in ("asc", "desc"):
            raise BadRequest(f"orderBy direction for '{column.name}' must be asc or desc")
        order.append((column, lowered == "desc"))
    return tuple(order)


def _count(raw: Any, what: str, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if type(raw) is not int or not 0 <= raw <= maximum:
        raise BadRequest(f"{what} must be an integer from 0 to {maximum}")
    return raw


def _expand(table: Table, raw: Any) -> tuple[Column, ...]:
    if raw is None:
        return ()
    fks = []
    for name in _names(raw, "expand"):
        fk = table.relations.get(name)
        if fk is None:
            raise BadRequest(f"Unknown relation '{shown(name)}' in expand")
        fks.append(fk)
    return tuple(fks)


# ---- insert and update data ----------------------------------------------------------------


def parse_data(table: Table, params: Mapping[str, Any], *, insert: bool) -> dict[str, Any]:
    """Checked canonical values by column name; the id only where the caller must supply it."""
    if "data" in params and "values" in params:
        raise BadRequest("Give data or values, not both")
    raw = params.get("data", params.get("values"))
    if not isinstance(raw, dict) or (not insert and not raw):
        need = "an object" if insert else "a non-empty object"
        raise BadRequest(f"data must be {need} of column → value")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        column = column_of(table, name, "data")
        if column.name == table.id_column:
            if not insert:
                raise BadRequest(f"Column '{column.name}' is the id and cannot be updated")
            if table.id_generate != "client":
                raise BadRequest(f"Column '{column.name}' is generated by the server")
        values[column.name] = write_value(column, value)
    if insert:
        for column in table.columns.values():
            if column.name in values or column.nullable or column.has_default:
                continue
            if column.name != table.id_column or table.id_generate == "client":
                raise BadRequest(f"Missing value for required column '{column.name}'")
    return values
