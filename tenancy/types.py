"""Every rule about a value's type, in one place: column types (`docs/crud.md` "Types") and logic
param
types (`docs/logics.md`).

One `check` decides whether a JSON value fits a column type and gives its canonical value; the
publish (`literal_problem`: schema defaults, row-filter literals) and the request (`canonical`:
written values, `where` operands, row filters) both call it, so a literal accepted at publish is
never refused per request (docs/decisions.md "One column-type module"). Canonical values are
engine-neutral (`datetime` in UTC, `Decimal`, `bytes`, canonical UUID text, lists), so permission
checks compare like with like. Below them: how each engine stores a type (column type, DDL
constants, bound values and values read back), identifier quoting, and logic params.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

import orjson

from tenancy.encode import dumps
from tenancy.errors import BadRequest

if TYPE_CHECKING:
    from tenancy.releases.model import Column

Engine = Literal["postgresql", "sqlite"]
Convert = Callable[[Any], Any]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SCALAR_TYPES = (
    "string",
    "int",
    "bigint",
    "float",
    "decimal",
    "boolean",
    "json",
    "timestamp",
    "uuid",
    "bytes",
)
COLUMN_TYPES = (*SCALAR_TYPES, "array")
# Only ever tested for null: never compared, sorted on, or used in a row filter (`docs/crud.md`).
UNORDERED = frozenset({"json", "array"})


@dataclass(frozen=True, slots=True)
class ArrayItems:
    """The item type of an array column (itself an array for nested arrays)."""

    type: str
    items: ArrayItems | None = None


def items_of(doc: dict[str, Any] | None) -> ArrayItems | None:
    """`items` of a column in the release JSON (`{"type", "items"?}`) as ArrayItems."""
    if doc is None:
        return None
    return ArrayItems(doc["type"], items_of(doc.get("items")))


# ---- JSON value → canonical value (publish and request) ----------------------------------------


class Invalid(Exception):
    """A value that does not fit a type; `path` locates it inside nested arrays."""

    def __init__(self, reason: str, path: tuple[int, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


def _string(value: Any) -> str:
    if type(value) is not str:
        raise Invalid("expected a string")
    if "\x00" in value:
        raise Invalid("NUL characters are not allowed")  # PostgreSQL text cannot hold them
    return value


def _int(value: Any) -> int:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise Invalid("expected a 64-bit integer")
    return value


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise Invalid("expected a number")
    try:
        return float(value)
    except OverflowError:
        raise Invalid("number out of range") from None


def _decimal(value: Any) -> Decimal:
    try:
        if (type(value) is str and "_" not in value) or type(value) is int:
            number = Decimal(value)
        elif type(value) is float:
            number = Decimal(repr(value))  # the shortest form, not the binary expansion
        else:
            raise Invalid("expected a decimal string or a number")
    except InvalidOperation:
        raise Invalid("expected a decimal string or a number") from None
    if not number.is_finite():
        raise Invalid("expected a finite decimal")
    return number


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise Invalid("expected true or false")
    return value


def _json(value: Any) -> Any:
    return value  # already parsed JSON (a request body, or a publish literal after `_as_json`)


def _timestamp(value: Any) -> dt.datetime:
    if type(value) is not str:
        raise Invalid("expected an ISO-8601 timestamp string")
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("expected an ISO-8601 timestamp string") from None
    # In UTC, so every engine and every place (arrays too) writes the same instant the same way.
    return stamp.astimezone(dt.UTC) if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


def _uuid(value: Any) -> str:
    if type(value) is not str:
        raise Invalid("expected a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid("expected a UUID string") from None


def _bytes(value: Any) -> bytes:
    if type(value) is not str:
        raise Invalid("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("expected a base64 string") from None


_SCALARS: dict[str, Convert] = {
    "string": _string,
    "int": _int,
    "bigint": _int,
    "float": _float,
    "decimal": _decimal,
    "boolean": _boolean,
    "json": _json,
    "timestamp": _timestamp,
    "uuid": _uuid,
    "bytes": _bytes,
}


def check(col_type: str, items: ArrayItems | None, value: Any) -> Any:
    """A non-null parsed JSON value as the canonical value of the type; raises Invalid."""
    if col_type != "array":
        return _SCALARS[col_type](value)
    if type(value) is not list:
        raise Invalid("expected an array")
    assert items is not None, "the compiler gives every array its items"
    out = []
    for i, item in enumerate(value):
        try:
            if item is None:
                raise Invalid("null is not allowed inside an array")
            out.append(check(items.type, items.items, item))
        except Invalid as exc:
            raise Invalid(exc.reason, (i, *exc.path)) from None
    return out


def canonical(column: Column, value: Any) -> Any:
    """A non-null JSON value as the column's canonical value; raises Invalid."""
    return check(column.type, column.items, value)


def invalid(column: Column, exc: Invalid, where: str = "") -> BadRequest:
    place = f" in {where}" if where else ""
    return BadRequest(f"Invalid value for column '{column.name}{_at(exc)}'{place}: {exc.reason}")


def write_value(column: Column, value: Any) -> Any:
    """A value to write: checked, canonical; null only for a nullable column. BadRequest else."""
    if value is None:
        if not column.nullable:
            raise BadRequest(f"Column '{column.name}' cannot be null")
        return None
    try:
        return canonical(column, value)
    except Invalid as exc:
        raise invalid(column, exc) from None


def _at(exc: Invalid) -> str:
    return "".join(f"[{i}]" for i in exc.path)


def literal_problem(
    value: Any, col_type: str, items: ArrayItems | None, *, allow_now: bool = False
) -> str | None:
    """Why a non-null publish-time literal (from YAML or CEL) is refused for a type, or None.

    The literal goes through JSON first, as a request value arrives and as the release stores it,
    then through the very `check` a request runs.
    """
    if allow_now and col_type == "timestamp" and value == "now":
        return None
    try:
        check(col_type, items, orjson.loads(orjson.dumps(value)))
    except orjson.JSONEncodeError:
        return "not representable as JSON (integers must fit in 64 bits)"
    except Invalid as exc:
        reason = exc.reason + (" or now" if allow_now and col_type == "timestamp" else "")
        return f"item {_at(exc)}: {reason}" if exc.path else reason
    return None


# ---- JSON Schema of a type (the per-tenant OpenAPI document, `docs/api.md` "OpenAPI") --------

_READ_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int": {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
    "bigint": {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
    "float": {"type": "number"},
    "decimal": {"type": "string", "format": "decimal"},
    "boolean": {"type": "boolean"},
    "json": {},
    "timestamp": {"type": "string", "format": "date-time"},
    "uuid": {"type": "string", "format": "uuid"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}
# What `check` accepts where it differs from what a read gives back.
_WRITE_SCHEMAS: dict[str, dict[str, Any]] = {
    "decimal": {"type": ["string", "number"]},
    "timestamp": {"type": "string"},  # an offset is optional on write (taken as UTC)
}


def value_schema(col_type: str, items: ArrayItems | None, *, write: bool = False) -> dict[str, Any]:
    """The JSON Schema of a non-null value of a column type: as written (`write`, what `check`
    accepts) or as read back (`docs/api.md` "Row values as JSON")."""
    if col_type == "array":
        assert items is not None, "the compiler gives every array its items"
        return {"type": "array", "items": value_schema(items.type, items.items, write=write)}
    schema = _WRITE_SCHEMAS.get(col_type) if write else None
    return dict(schema if schema is not None else _READ_SCHEMAS[col_type])


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null."""
    if not schema:
        return schema  # `json`: already any value, null included
    return {"anyOf": [schema, {"type": "null"}]}


# ---- logic params (`docs/logics.md`)
# ----------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


# Whether a JSON value fits a logic param type (`docs/logics.md` call-time step 3); at publish,
# whether
# a param default does.
PARAM_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "int": _is_int,
    "float": lambda v: type(v) is float or _is_int(v),
    "bool": lambda v: type(v) is bool,
    "json": lambda v: isinstance(v, (dict, list)),
}
PARAM_TYPES = tuple(PARAM_CHECKS)
# The JSON Schema of each logic param type, exactly what `PARAM_CHECKS` lets through.
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int": {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "json": {"type": ["object", "array"]},
}


class JsonText(str):
    """JSON text of a `json` logic param on PostgreSQL.

    The statement decides the parameter's type: a json/jsonb parameter (`:j::jsonb`, a jsonb
    column) takes the text as the JSON it is (`pg_json`), any other as the text it is.
    """

    __slots__ = ()


def json_param(value: Any, engine: Engine) -> str:
    """A `json` logic param as bound on `engine`: its JSON text (docs/decisions.md)."""
    text = orjson.dumps(value).decode()
    return text if engine == "sqlite" else JsonText(text)


# ---- storage per engine (`docs/crud.md` "Types", docs/decisions.md "SQLite storage")
# ---------------


def quote(name: str) -> str:
    """An identifier (table, column, index) quoted for both engines."""
    return '"' + name.replace('"', '""') + '"'


_PG_TYPES = {
    "string": "text",
    "int": "bigint",
    "bigint": "bigint",
    "float": "double precision",
    "decimal": "numeric",
    "boolean": "boolean",
    "json": "jsonb",
    "timestamp": "timestamptz",
    "uuid": "uuid",
    "bytes": "bytea",
}
_SQLITE_TYPES = {
    "string": "TEXT",
    "int": "INTEGER",
    "bigint": "INTEGER",
    "float": "REAL",
    "decimal": "TEXT",
    "boolean": "INTEGER",
    "json": "TEXT",
    "timestamp": "TEXT",
    "uuid": "TEXT",
    "bytes": "BLOB",
    "array": "TEXT",
}
_SQLITE_NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"


def column_type(column: Column, engine: Engine) -> str:
    """The database column type of a schema type on `engine`."""
    if engine == "sqlite":
        return _SQLITE_TYPES[column.type]
    if column.type != "array":
        return _PG_TYPES[column.type]
    assert column.items is not None
    if column.items.type == "array":
        return "jsonb"
    return f"{_PG_TYPES[column.items.type]}[]"


def default_sql(column: Column, engine: Engine) -> str:
    """The DEFAULT expression of a column with a default: the value CRUD would write there."""
    if column.default_now:
        return _SQLITE_NOW if engine == "sqlite" else "now()"
    return _constant(canonical(column, column.default), column.type, column.items, engine)


def _sql_string(text: str, engine: Engine) -> str:
    """A string constant that means the same whatever the server's settings: PostgreSQL reads a
    plain '...' with backslash escapes when `standard_conforming_strings` is off, an E'...' always
    with them, so a string with a backslash is an E'...' with it doubled (issue 9 row 11); one
    without reads the same either way. SQLite has no escapes."""
    quoted = text.replace("'", "''")
    if engine == "sqlite" or "\\" not in text:
        return f"'{quoted}'"
    return "E'" + quoted.replace("\\", "\\\\") + "'"


def _constant(value: Any, col_type: str, items: ArrayItems | None, engine: Engine) -> str:
    """A canonical value as an SQL constant. Floats are finite: neither YAML nor JSON has NaN."""
    if col_type == "array":
        assert items is not None
        if engine == "sqlite":
            return _sql_string(_array_text(value), engine)
        if items.type == "array":
            return f"{_sql_string(pg_json(value), engine)}::jsonb"
        elements = ", ".join(_constant(v, items.type, items.items, engine) for v in value)
        return f"ARRAY[{elements}]::{_PG_TYPES[items.type]}[]"
    if col_type in ("int", "bigint", "float"):
        return repr(value)
    if col_type == "boolean":
        return ("1" if value else "0") if engine == "sqlite" else ("true" if value else "false")
    if col_type == "json":
        text = _sql_string(_json_text(value), engine)
        return text if engine == "sqlite" else f"{text}::jsonb"
    if col_type == "bytes":
        return f"X'{value.hex()}'" if engine == "sqlite" else f"E'\\\\x{value.hex()}'::bytea"
    if col_type == "timestamp":
        return _sql_string(sqlite_timestamp(value), engine)
    return _sql_string(str(value), engine)  # string, uuid, decimal


def sqlite_timestamp(value: dt.datetime) -> str:
    """UTC text that sorts like time; milliseconds (as schema defaults write them) when exact."""
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.isoformat(timespec=spec) + "Z"


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _array_text(value: Any) -> str:
    return dumps(value).decode()  # items in their JSON shapes: decimals as text, bytes base64


def pg_json(value: Any) -> str:
    """Encoder of PostgreSQL json/jsonb parameters: a value as its JSON text; JsonText as is."""
    if type(value) is JsonText:
        return value
    return dumps(value).decode()


_SQLITE_ENCODERS: dict[str, Convert] = {
    "decimal": str,
    "timestamp": sqlite_timestamp,
    "json": _json_text,
    "array": _array_text,
}


def _pg_json_items(value: list[Any]) -> list[Any]:
    """asyncpg reads a list inside an array parameter as a sub-array; a tuple is one element,
    which the jsonb codec writes as a JSON array."""
    return [tuple(item) if type(item) is list else item for item in value]


def encoder(column: Column, engine: Engine) -> Convert | None:
    """How a canonical non-null value of `column` is bound on `engine` (None: as it is)."""
    if engine == "sqlite":
        return _SQLITE_ENCODERS.get(column.type)
    if column.items is not None and column.items.type == "json":
        return _pg_json_items  # `json[]`; nested arrays are one jsonb value and need nothing
    return None


def _from_bool(value: Any) -> Any:
    return bool(value) if type(value) is int else value


def _from_json(value: Any) -> Any:
    if type(value) is not str:
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value  # not written by us: hand back the stored text rather than fail the read


def _from_timestamp(value: Any) -> Any:
    if type(value) is not str:
        return value
    try:
        return dt.datetime.fromisoformat(value)  # naive = UTC, written with an offset on output
    except ValueError:
        return value


def _from_decimal(value: Any) -> Any:
    return str(value) if type(value) in (int, float) else value


_SQLITE_DECODERS: dict[str, Convert] = {
    "boolean": _from_bool,
    "json": _from_json,
    "array": _from_json,
    "timestamp": _from_timestamp,
    "decimal": _from_decimal,
}


def decoders(columns: Iterable[Column], engine: Engine) -> list[tuple[str, Convert]]:
    """(name, decode) for each of `columns` whose stored value read on `engine` needs turning
    into its JSON-ready form; the others are JSON-ready as read.

    PostgreSQL's drivers and codecs already give JSON-ready values (none needs one, and a read
    asks once per call, not per column); SQLite gives back its storage forms (0/1, JSON text,
    timestamp text, decimal text).
    """
    if engine != "sqlite":
        return []
    return [(c.name, d) for c in columns if (d := _SQLITE_DECODERS.get(c.type)) is not None]
