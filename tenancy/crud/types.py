"""Column values: JSON in → checked canonical Python value → engine value, and SQLite rows back.

Canonical values are engine-neutral (`datetime` with zone, `Decimal`, `bytes`, canonical UUID
text, lists), so permission checks compare like with like. PostgreSQL takes them as they are
(asyncpg codecs; json/jsonb through the connection's JSON codec). SQLite stores what `crud.md`
fixes: decimals and timestamps as TEXT, booleans as 0/1, json and arrays as JSON TEXT.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from tenancy.encode import dumps
from tenancy.errors import BadRequest
from tenancy.releases.model import ArrayItems, Column, Engine

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
Convert = Callable[[Any], Any]


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
        raise Invalid("NUL characters are not allowed")
    return value


def _int(value: Any) -> int:
    if type(value) is not int or not _INT64_MIN <= value <= _INT64_MAX:
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
    return value


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


def _check(col_type: str, items: ArrayItems | None, value: Any) -> Any:
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
            out.append(_check(items.type, items.items, item))
        except Invalid as exc:
            raise Invalid(exc.reason, (i, *exc.path)) from None
    return out


def canonical(column: Column, value: Any) -> Any:
    """A non-null JSON value as the column's canonical value; raises Invalid."""
    return _check(column.type, column.items, value)


def invalid(column: Column, exc: Invalid, where: str = "") -> BadRequest:
    at = "".join(f"[{i}]" for i in exc.path)
    place = f" in {where}" if where else ""
    return BadRequest(f"Invalid value for column '{column.name}{at}'{place}: {exc.reason}")


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


# ---- canonical → engine ------------------------------------------------------------------------


def sqlite_timestamp(value: dt.datetime) -> str:
    """UTC text that sorts like time; milliseconds (as schema defaults write them) when exact."""
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.isoformat(timespec=spec) + "Z"


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _array_text(value: Any) -> str:
    return dumps(value).decode()  # items in their JSON shapes: decimals as text, bytes base64


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


# ---- SQLite rows → canonical ---------------------------------------------------------------


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


def decoder(column: Column, engine: Engine) -> Convert | None:
    """How a stored value of `column` read on `engine` becomes its JSON-ready form (None: as is)."""
    if engine == "sqlite":
        return _SQLITE_DECODERS.get(column.type)
    return None
