"""Row values as JSON (`docs/api.md`), from Python values and from real PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sqlite3
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson
import pytest

from tenancy.encode import dumps
from tenancy.pools import PoolKey, PoolManager

KEY = PoolKey("acme", "dev", "main", 1)


@pytest.fixture
async def manager() -> AsyncIterator[PoolManager]:
    manager = PoolManager(5, 200, 2000, 300, 10_000, 2500, 5, 5)
    yield manager
    await manager.close_all()


def test_python_values() -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    value = {
        "int": 9007199254740993,
        "float": 1.5,
        "decimal": Decimal("12345678901234567890.120"),
        "bytes": b"\x00\xffhi",
        "memoryview": memoryview(b"ab"),
        "bytearray": bytearray(b"ab"),
        "aware": dt.datetime(2024, 5, 1, 12, 30, tzinfo=berlin),
        "naive": dt.datetime(2024, 5, 1, 12, 30, 0, 250000),
        "date": dt.date(2024, 5, 1),
        "time": dt.time(8, 15),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "interval": dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000),
        "negative": -dt.timedelta(hours=1),
        "inet": ipaddress.ip_address("10.0.0.1"),
        "range": asyncpg.Range(1, 5, upper_inc=True),
        "empty_range": asyncpg.Range(empty=True),
        "set": {3},
        "nested": [[1, None], {"k": Decimal("1.0")}],
        "null": None,
        "bool": True,
    }
    assert orjson.loads(dumps(value)) == {
        "int": 9007199254740993,
        "float": 1.5,
        "decimal": "12345678901234567890.120",
        "bytes": "AP9oaQ==",
        "memoryview": "YWI=",
        "bytearray": "YWI=",
        "aware": "2024-05-01T12:30:00+02:00",
        "naive": "2024-05-01T12:30:00.250000+00:00",
        "date": "2024-05-01",
        "time": "08:15:00",
        "uuid": "12345678-1234-5678-1234-567812345678",
        "interval": "P1DT2H3M4.5S",
        "negative": "-P0DT1H0M0S",
        "inet": "10.0.0.1",
        "range": "[1,5]",
        "empty_range": "empty",
        "set": [3],
        "nested": [[1, None], {"k": "1.0"}],
        "null": None,
        "bool": True,
    }


async def test_postgresql_row(pg_url: str, manager: PoolManager) -> None:
    sql = """
        SELECT 42::int AS int4, 9007199254740993::bigint AS int8, 1.25::float8 AS float8,
               '12345678901234567890.120'::numeric AS numeric, true AS bool, 'hé'::text AS text,
               '2024-05-01 12:30:00+02'::timestamptz AS timestamptz,
               '2024-05-01 12:30:00'::timestamp AS timestamp, '2024-05-01'::date AS date,
               '12345678-1234-5678-1234-567812345678'::uuid AS uuid,
               '{"a": [1, {"b": null}]}'::jsonb AS jsonb, '[1, "x"]'::json AS json,
               '\\x00ff6869'::bytea AS bytea, ARRAY[1, 2, NULL]::int[] AS ints,
               ARRAY['a', 'b']::text[] AS texts, ARRAY[[1, 2], [3, 4]] AS matrix,
               ARRAY['1.5']::numeric[] AS numerics, NULL::int AS nothing,
               '1 day 02:03:04.5'::interval AS interval, '10.0.0.1'::inet AS inet,
               int4range(1, 5) AS range
    """
    rows = (await manager.query(KEY, pg_url, sql, [])).rows
    assert orjson.loads(dumps({"data": rows})) == {
        "data": [
            {
                "int4": 42,
                "int8": 9007199254740993,
                "float8": 1.25,
                "numeric": "12345678901234567890.120",
                "bool": True,
                "text": "hé",
                "timestamptz": "2024-05-01T10:30:00+00:00",
                "timestamp": "2024-05-01T12:30:00+00:00",
                "date": "2024-05-01",
                "uuid": "12345678-1234-5678-1234-567812345678",
                "jsonb": {"a": [1, {"b": None}]},
                "json": [1, "x"],
                "bytea": "AP9oaQ==",
                "ints": [1, 2, None],
                "texts": ["a", "b"],
                "matrix": [[1, 2], [3, 4]],
                "numerics": ["1.5"],
                "nothing": None,
                "interval": "P1DT2H3M4.5S",
                "inet": "10.0.0.1",
                "range": "[1,5)",
            }
        ]
    }


async def test_asyncpg_records_encode_as_objects(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        record = await conn.fetchrow("SELECT 1 AS a, 'x' AS b")
    finally:
        await conn.close()
    assert dumps([record]) == b'[{"a":1,"b":"x"}]'


async def test_sqlite_row(tmp_path: Path, manager: PoolManager) -> None:
    path = tmp_path / "t.db"
    sqlite3.connect(path).close()
    url = f"sqlite:///{path}"
    sql = "SELECT 7 AS i, 2.5 AS f, 'hé' AS t, x'00ff6869' AS b, NULL AS n"
    rows = (await manager.query(KEY, url, sql, [])).rows
    assert dumps(rows) == b'[{"i":7,"f":2.5,"t":"h\xc3\xa9","b":"AP9oaQ==","n":null}]'
