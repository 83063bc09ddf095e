"""The one column-type module (`tenancy.types`): publish and request agree on every literal, and
`json` logic params round-trip as JSON on both engines through real HTTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tenancy.errors import BadRequest, PublishError
from tenancy.releases.compile.compiler import compile_release
from tenancy.releases.model import Column, Release
from tenancy.types import JsonText, decoders, default_sql, json_param, pg_json, write_value

from support.crud import Lab

# (column spec, literal): each is a schema default at publish and a written value per request.
LITERALS: list[tuple[str, Any]] = [
    ("{type: string}", "plain"),
    ("{type: string}", "a\x00b"),
    ("{type: string}", 5),
    ("{type: int}", -(2**63)),
    ("{type: int}", 2**63),
    ("{type: int}", True),
    ("{type: int}", 1.0),
    ("{type: bigint}", "12"),
    ("{type: float}", 1),
    ("{type: float}", 2.5),
    ("{type: float}", "1.0"),
    ("{type: decimal}", "12.50"),
    ("{type: decimal}", 1.5),
    ("{type: decimal}", 7),
    ("{type: decimal}", "1_000"),
    ("{type: decimal}", "NaN"),
    ("{type: decimal}", "abc"),
    ("{type: decimal}", True),
    ("{type: boolean}", False),
    ("{type: boolean}", 0),
    ("{type: json}", {"a": [1, None, "x"]}),
    ("{type: json}", "just text"),
    ("{type: timestamp}", "2024-01-02T05:04:05+02:00"),
    ("{type: timestamp}", "2024-01-02"),
    ("{type: timestamp}", "yesterday"),
    ("{type: uuid}", "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
    ("{type: uuid}", "not-a-uuid"),
    ("{type: bytes}", "AAEC/w=="),
    ("{type: bytes}", "***"),
    ("{type: array, items: string}", ["a", "b"]),
    ("{type: array, items: string}", ["a", "b\x00"]),
    ("{type: array, items: json}", [{"k": 1}, None]),
    ("{type: array, items: decimal}", ["1.5", "2_0"]),
    ("{type: array, items: {type: array, items: int}}", [[1, 2], []]),
    ("{type: array, items: {type: array, items: int}}", [[1], 2]),
    ("{type: array, items: timestamp}", "2024-01-01"),
]


def _schema(spec: str, default: Any | None) -> dict[str, str]:
    extra = "" if default is None else f", default: {orjson.dumps(default).decode()}"
    return {"schema/app.yaml": f"tables:\n  t:\n    columns:\n      a: {spec[:-1]}{extra}}}\n"}


def _column(spec: str) -> Column:
    body = compile_release(_schema(spec, None), connections=None).body
    return Release.load(body).tables["t"].columns["a"]


@pytest.mark.parametrize(("spec", "literal"), LITERALS)
def test_publish_refuses_exactly_what_a_request_refuses(spec: str, literal: Any) -> None:
    try:
        write_value(_column(spec), literal)
        request_reason = None
    except BadRequest as exc:
        request_reason = exc.message.rpartition(": ")[2]
    try:
        compile_release(_schema(spec, literal), connections=None)
        publish_problem = None
    except PublishError as exc:
        assert exc.details is not None and len(exc.details) == 1, exc.details
        publish_problem = exc.details[0]
    if request_reason is None:
        assert publish_problem is None, (spec, literal, publish_problem)
        return
    assert publish_problem is not None, (spec, literal, request_reason)
    assert publish_problem["file"] == "schema/app.yaml" and publish_problem["line"] == 4
    assert publish_problem["message"].startswith("column 't.a': invalid default: ")
    assert request_reason in publish_problem["message"]


@pytest.mark.parametrize(
    ("column", "literal", "reason"),
    [
        ("code", '"a\\u0000b"', "NUL characters are not allowed"),
        ("ref", '"not-a-uuid"', "expected a UUID string"),
        ("price", '"1_000"', "expected a decimal string or a number"),
        ("due", '"soon"', "expected an ISO-8601 timestamp string"),
        ("score", "9223372036854775808u", "expected a 64-bit integer"),
    ],
)
def test_row_filter_literals_are_checked_like_request_values(
    column: str, literal: str, reason: str
) -> None:
    schema = (
        "tables:\n  t:\n    columns:\n      code: {type: string}\n      ref: {type: uuid}\n"
        "      price: {type: decimal}\n      due: {type: timestamp}\n      score: {type: int}\n"
    )
    permissions = (
        f"tables:\n  t:\n    select:\n      roles: [a]\n"
        f"      condition: resource.{column} == {literal}\n"
    )
    files = {"schema/app.yaml": schema, "config/permissions.yaml": permissions}
    with pytest.raises(PublishError) as info:
        compile_release(files, connections=None)
    [problem] = info.value.details or []
    assert problem["file"] == "config/permissions.yaml" and problem["line"] == 5
    assert "condition compares" in problem["message"] and reason in problem["message"]
    # the same literals that fit are accepted
    ok = {"code": '"a"', "ref": '"6f9619ff-8b86-d011-b42d-00c04fc964ff"', "price": '"1.5"'}
    ok |= {"due": '"2024-01-01T00:00:00Z"', "score": "5"}
    files["config/permissions.yaml"] = permissions.replace(literal, ok[column])
    assert compile_release(files, connections=None).body


def test_defaults_render_as_crud_writes_them() -> None:
    """DDL defaults are the canonical value in each engine's storage form."""
    cases: list[tuple[str, Any, str, str]] = [
        ("{type: timestamp}", "2024-01-02T05:04:05+02:00", "'2024-01-02T03:04:05.000Z'", "=pg"),
        ("{type: decimal}", 1.5, "'1.5'", "=pg"),
        ("{type: float}", 3, "3.0", "=pg"),
        ("{type: boolean}", True, "1", "true"),
        (
            "{type: uuid}",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "'6f9619ff-8b86-d011-b42d-00c04fc964ff'",
            "=pg",
        ),
        ("{type: bytes}", "AAEC/w==", "X'000102ff'", "E'\\\\x000102ff'::bytea"),
        ("{type: string}", "a\\'b", "'a\\''b'", "E'a\\\\''b'"),
        ("{type: json}", {"k": "it's"}, "'{\"k\":\"it''s\"}'", "'{\"k\":\"it''s\"}'::jsonb"),
        (
            "{type: array, items: timestamp}",
            ["2024-01-01T00:00:00Z"],
            "'[\"2024-01-01T00:00:00+00:00\"]'",
            "ARRAY['2024-01-01T00:00:00.000Z']::timestamptz[]",
        ),
        ("{type: array, items: decimal}", [1.5], "'[\"1.5\"]'", "ARRAY['1.5']::numeric[]"),
        (
            "{type: array, items: {type: array, items: int}}",
            [[1], []],
            "'[[1],[]]'",
            "'[[1],[]]'::jsonb",
        ),
    ]
    for spec, default, sqlite, pg in cases:
        body = compile_release(_schema(spec, default), connections=None).body
        column = Release.load(body).tables["t"].columns["a"]
        assert default_sql(column, "sqlite") == sqlite, spec
        assert default_sql(column, "postgresql") == (sqlite if pg == "=pg" else pg), spec


def test_json_params_bind_as_json_text() -> None:
    value = {"a": [1, "é", None]}
    on_pg, on_sqlite = json_param(value, "postgresql"), json_param(value, "sqlite")
    assert on_pg == on_sqlite == '{"a":[1,"é",null]}'
    assert type(on_pg) is JsonText and type(on_sqlite) is str
    # a json/jsonb parameter takes JsonText as the JSON it is, any other value as its JSON text
    assert pg_json(on_pg) is on_pg
    assert pg_json(on_sqlite) == '"{\\"a\\":[1,\\"é\\",null]}"'
    assert pg_json({"d": Decimal("2.50"), "t": dt.datetime(2024, 1, 1)}) == (
        '{"d":"2.50","t":"2024-01-01T00:00:00+00:00"}'
    )


# ---- json logic params through /call, on SQLite and PostgreSQL --------------------------------

VALUES: list[Any] = [{"a": 1, "b": [True, None, "x"]}, [1, {"c": "é"}], []]


@pytest.mark.asyncio(loop_scope="module")
async def test_json_param_round_trips_as_json(w: Lab) -> None:
    for i, value in enumerate(VALUES):
        params = {"j": value, "id": f"json-{i}"}
        assert await w.ok("alice", "logics/json/store", params) == {"affected": 1}
        [row] = await w.ok("admin", "db/posts/select", {"where": {"id": f"json-{i}"}})
        assert row["meta"] == value  # stored as JSON, not as a JSON string
        if w.engine == "postgresql":
            kind = "object" if isinstance(value, dict) else "array"
            assert await w.ok("alice", "logics/json/cast", params) == [{"j": value, "kind": kind}]
        else:
            [[stored]] = await w.rows(f"SELECT meta FROM posts WHERE id = 'json-{i}'")
            assert orjson.loads(stored) == value
    # A result column typed text is text on both engines: the Bridge does not guess JSON in it.
    text = await w.ok("alice", "logics/json/text", {"j": {"a": 1}})
    assert text == [{"j": '{"a":1}'}]
    if w.engine == "sqlite":  # SQLite's JSON functions read the bound text
        assert await w.ok("alice", "logics/json/extract", {"j": {"a": 7}}) == [{"a": 7}]
    # json params still take objects and arrays only; null is absent (bound as NULL)
    assert "Invalid type for param: j" in await w.fails(
        "alice", "logics/json/text", {"j": "{}"}, 400
    )
    assert await w.ok("alice", "logics/json/text", {"j": None}) == [{"j": None}]


@pytest.mark.asyncio(loop_scope="module")
async def test_publish_over_http_refuses_what_a_call_refuses(w: Lab) -> None:
    releases = "/projects/lab/envs/prod/releases"
    for column, spec, value in [("title", "string", "a\x00b"), ("price", "decimal", "1_000")]:
        default = orjson.dumps(value).decode()
        schema = f"tables:\n  t:\n    columns:\n      a: {{type: {spec}, default: {default}}}\n"
        r = await w.bridge.admin("POST", releases, json={"files": {"schema/app.yaml": schema}})
        assert r.status_code == 400, r.text
        [problem] = r.json()["error"]["details"]
        assert (problem["file"], problem["line"]) == ("schema/app.yaml", 4)
        data = {"author_id": w.ids["alice"], "title": "t", column: value}
        refused = await w.fails("alice", "db/posts/insert", {"data": data}, 400)
        assert f"'{column}'" in refused
        assert refused.rpartition(": ")[2] in problem["message"]


def test_a_read_decodes_only_what_its_engine_stores_in_another_form() -> None:
    """SQLite gives back storage forms (0/1, JSON text, timestamp text, decimal text), each
    decoded; PostgreSQL's values are JSON-ready, so a read there decodes nothing."""
    columns = [
        Column(name, kind, nullable=True, unique=False)
        for name, kind in [
            ("s", "string"),
            ("b", "boolean"),
            ("j", "json"),
            ("t", "timestamp"),
            ("d", "decimal"),
            ("i", "integer"),
        ]
    ]
    on_sqlite = dict(decoders(columns, "sqlite"))
    assert list(on_sqlite) == ["b", "j", "t", "d"]
    assert on_sqlite["b"](1) is True and on_sqlite["j"]('{"a":1}') == {"a": 1}
    assert on_sqlite["t"]("2024-06-01T10:00:00") == dt.datetime(2024, 6, 1, 10, 0)
    assert on_sqlite["d"](1.5) == "1.5"
    assert decoders(columns, "postgresql") == []
