"""The runtime model: Release.load, call-time param handling, access checks, demo on real DBs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tenancy.errors import BadRequest, Forbidden, Unauthorized
from tenancy.principal import ANONYMOUS, Principal
from tenancy.releases.compile.compiler import compile_release, load_project_dir
from tenancy.releases.model import Logic, Release, RowFilter
from tenancy.types import JsonText

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
ALICE = Principal("user", "alice", frozenset({"public", "authenticated"}))
ADMIN = Principal("user", "root", frozenset({"public", "authenticated", "admin"}))
KEY = Principal("api_key", "k1", frozenset({"public", "authenticated", "ci"}))

LOGIC = """\
---
params:
  s: {type: string, required: true}
  i: {type: int, default: 7}
  f: {type: float}
  b: {type: bool}
  j: {type: json}
---
SELECT :s, :i, :f, :b, :j, :auth.sub, :auth.roles, :auth.type, :client.ip, :s
"""


def release(files: dict[str, str]) -> Release:
    return Release.load(compile_release(files, connections=None).body)


@pytest.fixture(scope="module")
def logic() -> Logic:
    return release({"logics/t.sql": LOGIC}).logics["t"]


def test_load_keeps_id_and_builds_logics(logic: Logic) -> None:
    compiled = compile_release({"logics/t.sql": LOGIC}, connections=None)
    loaded = Release.load(compiled.body)
    assert loaded.id == compiled.id
    assert logic.name == "t"
    assert logic.binds == (
        "s",
        "i",
        "f",
        "b",
        "j",
        "auth.sub",
        "auth.roles",
        "auth.type",
        "client.ip",
    )
    assert logic.sql["postgresql"].endswith("$9, $1")
    assert logic.gate is None
    assert logic.params["i"].has_default and logic.params["i"].default == 7


def test_bind_args_maps_params_and_system_variables(logic: Logic) -> None:
    args = logic.bind_args({"s": "x", "f": 2, "b": False, "j": {"k": [1, "é"]}}, ALICE, "10.0.0.1")
    assert args == [
        "x",
        7,
        2.0,
        False,
        '{"k":[1,"é"]}',
        "alice",
        ["authenticated", "public"],
        "user",
        "10.0.0.1",
    ]
    assert type(args[2]) is float
    assert type(args[4]) is JsonText  # a jsonb parameter takes it as JSON (tests/test_types.py)
    sqlite_args = logic.bind_args({"s": "x", "j": [1]}, KEY, "::1", engine="sqlite")
    assert sqlite_args[4] == "[1]" and type(sqlite_args[4]) is str
    assert sqlite_args[5:] == ["k1", '["authenticated","ci","public"]', "api_key", "::1"]
    assert sqlite_args[2] is None and sqlite_args[3] is None  # absent optional params bind NULL
    assert logic.bind_args({"s": "x", "i": None}, ANONYMOUS, "")[1] == 7  # null = absent
    assert logic.bind_args({"s": "x"}, ANONYMOUS, "")[5:8] == ["", ["public"], "anonymous"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Missing required param: s"),
        ({"s": None}, "Missing required param: s"),
        ({"s": "x", "zzz": 1}, "Unknown param: zzz"),
        ({"s": 5}, "Invalid type for param: s"),
        ({"s": "x", "i": 1.0}, "Invalid type for param: i"),
        ({"s": "x", "i": 1.5}, "Invalid type for param: i"),
        ({"s": "x", "i": True}, "Invalid type for param: i"),
        ({"s": "x", "i": "1"}, "Invalid type for param: i"),
        ({"s": "x", "i": 2**63}, "Invalid type for param: i"),
        ({"s": "x", "f": True}, "Invalid type for param: f"),
        ({"s": "x", "f": "1.5"}, "Invalid type for param: f"),
        ({"s": "x", "b": 1}, "Invalid type for param: b"),
        ({"s": "x", "b": "true"}, "Invalid type for param: b"),
        ({"s": "x", "j": "{}"}, "Invalid type for param: j"),
        ({"s": "x", "j": 5}, "Invalid type for param: j"),
    ],
)
def test_bind_args_rejects_bad_params(logic: Logic, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        logic.bind_args(params, ALICE, "")
    assert info.value.message == message


def test_float_accepts_ints_and_floats(logic: Logic) -> None:
    assert logic.resolve_params({"s": "x", "f": 1.25}) == {"s": "x", "i": 7, "f": 1.25}
    assert logic.resolve_params({"s": "x", "f": -3})["f"] == -3.0


def test_condition_is_checked_after_params_with_defaults() -> None:
    text = (
        "---\nparams:\n  owner: {type: string, required: true}\n  n: {type: int, default: 3}\n"
        "condition: request.params.owner == request.auth.sub && request.params.n < 10\n---\n"
        "SELECT :owner"
    )
    gated = release({"logics/g.sql": text}).logics["g"]
    assert gated.gate is not None
    assert gated.bind_args({"owner": "alice"}, ALICE, "") == ["alice"]
    with pytest.raises(Forbidden):
        gated.bind_args({"owner": "bob"}, ALICE, "")
    with pytest.raises(Forbidden):
        gated.bind_args({"owner": "alice", "n": 50}, ALICE, "")
    with pytest.raises(BadRequest):  # params are validated before the condition
        gated.bind_args({"owner": 5}, ALICE, "")


@pytest.mark.parametrize(
    ("front", "principal", "error"),
    [
        ("auth: public", ANONYMOUS, None),
        ("auth: authenticated", ANONYMOUS, Unauthorized),
        ("auth: authenticated", ALICE, None),
        ("roles: [admin]", ALICE, Forbidden),
        ("roles: [admin]", ADMIN, None),
        ("roles: [admin, ci]", KEY, None),
        ("{auth: public, roles: [admin]}", ANONYMOUS, Unauthorized),
        ("{auth: public, roles: [public]}", ANONYMOUS, None),
    ],
)
def test_check_access(front: str, principal: Principal, error: type[Exception] | None) -> None:
    logic = release({"logics/a.sql": f"---\n{front}\n---\nSELECT 1"}).logics["a"]
    if error is None:
        logic.check_access(principal)
    else:
        with pytest.raises(error):
            logic.check_access(principal)


def test_tables_and_rules_from_the_demo() -> None:
    demo = Release.load(compile_release(load_project_dir(DEMO), connections=None).body)
    notes = demo.tables["notes"]
    assert notes.connection == "main"
    assert (notes.id_column, notes.id_generate) == ("id", "ulid")
    assert list(notes.columns)[:3] == ["id", "notebook_id", "category_id"]
    assert notes.columns["tags"].items is not None and notes.columns["tags"].items.type == "string"
    assert notes.columns["pinned"].has_default and notes.columns["pinned"].default is False
    assert notes.columns["created_at"].default_now
    assert set(notes.relations) == {"notebook", "category"}
    ref = notes.relations["category"].references
    assert ref is not None and (ref.table, ref.column, ref.on_delete) == (
        "categories",
        "id",
        "set_null",
    )
    assert [ix.columns for ix in notes.indexes] == [("owner_id", "created_at"), ("notebook_id",)]
    assert demo.tables["categories"].id_generate == "auto_increment"

    admin_rule = demo.rule_for("notes", "select", ADMIN.roles)
    assert admin_rule is not None and admin_rule.columns is None and admin_rule.filters == ()
    user_rule = demo.rule_for("notes", "select", ALICE.roles)
    assert user_rule is not None and user_rule.filters == (RowFilter("owner_id", "auth.sub"),)
    assert user_rule.columns is not None and "owner_id" not in user_rule.columns
    assert demo.rule_for("notes", "select", ANONYMOUS.roles) is None
    assert demo.rule_for("nope", "select", ADMIN.roles) is None
    assert demo.rule_for("categories", "update", ADMIN.roles) is None

    gate_rule = demo.rule_for("categories", "insert", KEY.roles)
    assert gate_rule is not None and gate_rule.gate is not None
    assert gate_rule.gate.allows(KEY, {})
    assert not gate_rule.gate.allows(ALICE, {})

    assert demo.auth.signup_enabled and demo.auth.signup_roles == ("writer",)
    assert (demo.auth.access_ttl_seconds, demo.auth.refresh_ttl_seconds) == (900, 2592000)
    assert demo.cors_origins == frozenset({"http://localhost:5173"})


def test_literal_and_param_row_filters_load() -> None:
    files = {
        "schema/a.yaml": "tables:\n  t:\n    columns:\n      s: {type: string}\n",
        "config/permissions.yaml": (
            "tables:\n  t:\n    select:\n      roles: [public]\n"
            "      condition: resource.s == 'x' && resource.id == request.params.id\n"
        ),
    }
    rule = release(files).rule_for("t", "select", frozenset({"public"}))
    assert rule is not None
    assert rule.filters == (RowFilter("s", "literal", "x"), RowFilter("id", "param", "id"))


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        Release.load(orjson.dumps({"format": 99}))


# ---- the demo logics run on both engines --------------------------------------------------------

SEED_ALICE = Principal("user", "seed-alice", frozenset({"public", "authenticated"}))
SEED_ADMIN = Principal("user", "seed-root", frozenset({"public", "authenticated", "admin"}))
CALLS: list[tuple[str, dict[str, Any], Principal]] = [
    ("public/stats", {}, ANONYMOUS),
    ("notes/mine", {}, SEED_ALICE),
    ("notes/mine", {"notebook_id": "01JF0000000000000000000NB2", "limit": 5}, SEED_ALICE),
    ("notebooks/summary", {"owner_id": "seed-alice"}, SEED_ALICE),
    ("admin/activity", {"limit": 1}, SEED_ADMIN),
    ("notes/pin", {"note_id": "01JF00000000000000000000N2"}, SEED_ALICE),
]
EXPECTED: list[list[tuple[Any, ...]]] = [
    [(3, 4, 3)],
    [
        ("01JF00000000000000000000N3",),
        ("01JF00000000000000000000N2",),
        ("01JF00000000000000000000N1",),
    ],
    [("01JF00000000000000000000N3",)],
    [
        ("01JF0000000000000000000NB1", "Projects", 2),
        ("01JF0000000000000000000NB2", "Reading list", 1),
    ],
    [("seed-alice", 3)],
]


def assert_demo_results(results: list[Any], affected: object) -> None:
    """Rows compared on the columns EXPECTED names (the first ones); the last call is the pin."""
    rows = [
        [tuple(row[: len(exp[0])]) for row in got]
        for got, exp in zip(results[:-1], EXPECTED, strict=True)
    ]
    assert rows == EXPECTED
    assert results[-1] == affected


def demo_release() -> Release:
    return Release.load(compile_release(load_project_dir(DEMO), connections=["main"]).body)


def test_demo_logics_on_sqlite() -> None:
    demo = demo_release()
    with sqlite3.connect(":memory:") as conn:
        seed = (DEMO / "seed" / "sqlite.sql").read_text()
        conn.executescript(seed)
        conn.executescript(seed)  # idempotent
        results = []
        for name, params, principal in CALLS:
            logic = demo.logics[name]
            logic.check_access(principal)
            cursor = conn.execute(
                logic.sql["sqlite"], logic.bind_args(params, principal, "", engine="sqlite")
            )
            results.append(cursor.fetchall() if cursor.description else cursor.rowcount)
    assert_demo_results(results, affected=1)


async def test_demo_logics_on_postgresql(pg_url: str) -> None:
    demo = demo_release()
    conn = await asyncpg.connect(pg_url)
    try:
        seed = (DEMO / "seed" / "postgresql.sql").read_text()
        await conn.execute(seed)
        await conn.execute(seed)  # idempotent
        results: list[Any] = []
        for name, params, principal in CALLS:
            logic = demo.logics[name]
            logic.check_access(principal)
            args = logic.bind_args(params, principal, "")
            statement = await conn.prepare(logic.sql["postgresql"])
            if statement.get_attributes():
                results.append([tuple(r) for r in await statement.fetch(*args)])
            else:
                await statement.fetch(*args)
                results.append(statement.get_statusmsg())
    finally:
        await conn.close()
    assert_demo_results(results, affected="UPDATE 1")
