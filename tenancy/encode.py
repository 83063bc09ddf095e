"""Row values → JSON bytes, in the shapes `docs/api.md` fixes ("Row values as JSON").

orjson already writes ints, floats, strings, bools, None, lists, dicts, dates and datetimes in the
right shape; `_default` is only called for the rest, so the common row costs no Python per value.
Not supported: PostgreSQL `timetz` (orjson rejects a time with a zone before asking `_default`).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

# Timestamps without a zone (PostgreSQL `timestamp`, SQLite text parsed elsewhere) are UTC by our
# convention, so every timestamp leaves with an offset.
_OPTIONS = orjson.OPT_NAIVE_UTC


def dumps(value: Any) -> bytes:
    """Serialize a response body or row; raises orjson.JSONEncodeError on what cannot be JSON."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # numeric keeps its exact digits; a JSON number would round
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)  # asyncpg's UUID subclass is not orjson's exact uuid.UUID
    if isinstance(value, dt.timedelta):
        return _iso_duration(value)
    if isinstance(value, asyncpg.Record):
        return dict(value.items())
    if isinstance(value, asyncpg.Range):
        return _range_text(value)
    if isinstance(value, set | frozenset):
        return list(value)
    # inet/cidr (ipaddress), bit strings, geometric types: their str() is PostgreSQL's text form.
    return str(value)


def _iso_duration(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    return f"{sign}P{value.days}DT{hours}H{minutes}M{seconds}{fraction}S"


def _range_text(value: asyncpg.Range) -> str:
    if value.isempty:
        return "empty"
    lower, upper = _bound(value.lower), _bound(value.upper)
    return f"{'[' if value.lower_inc else '('}{lower},{upper}{']' if value.upper_inc else ')'}"


def _bound(value: Any) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, dt.date) else str(value)
