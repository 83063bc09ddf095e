"""Logic files: front matter, bindings and statements, with problems naming the .sql line."""

from __future__ import annotations

from typing import Any

import pytest

from tenancy.errors import PublishError
from tenancy.releases.compile.compiler import compile_release


def compile_logic(text: str, connections: list[str] | None = None) -> dict[str, Any]:
    release = compile_release({"logics/x.sql": text}, connections=connections)
    logic: dict[str, Any] = release.doc["logics"]["x"]
    return logic


def problems(text: str, connections: list[str] | None = None) -> list[dict[str, Any]]:
    with pytest.raises(PublishError) as info:
        compile_release({"logics/x.sql": text}, connections=connections)
    details = info.value.details
    assert details
    assert {p["file"] for p in details} == {"logics/x.sql"}
    return details


def only(text: str, connections: list[str] | None = None) -> tuple[int | None, str]:
    details = problems(text, connections)
    assert len(details) == 1, details
    return details[0].get("line"), details[0]["message"]


FULL = """\
---
auth: authenticated
roles: [admin, support]
connection: main
params:
  owner_id: {type: string, required: true}
  limit:    {type: int, default: 20}
  ratio:    {type: float, default: 1}
  flags:    {type: json, default: {a: [1, 2]}}
  on:       {type: bool}
condition: request.params.owner_id == request.auth.sub
description: Items of one owner
---
SELECT id, name FROM items
WHERE owner_id = :owner_id AND tenant = :auth.sub AND :on IS NOT NULL
ORDER BY id LIMIT :limit;
"""


def test_full_front_matter_compiles() -> None:
    logic = compile_logic(FULL, ["main"])
    assert logic == {
        "auth": "authenticated",
        "roles": ["admin", "support"],
        "connection": "main",
        "params": {
            "owner_id": {"type": "string", "required": True},
            "limit": {"type": "int", "required": False, "default": 20},
            "ratio": {"type": "float", "required": False, "default": 1.0},
            "flags": {"type": "json", "required": False, "default": {"a": [1, 2]}},
            "on": {"type": "bool", "required": False},
        },
        "condition": "request.params.owner_id == request.auth.sub",
        "description": "Items of one owner",
        "sql": {
            "postgresql": "SELECT id, name FROM items\n"
            "WHERE owner_id = $1 AND tenant = $2 AND $3 IS NOT NULL\nORDER BY id LIMIT $4",
            "sqlite": "SELECT id, name FROM items\n"
            "WHERE owner_id = ?1 AND tenant = ?2 AND ?3 IS NOT NULL\nORDER BY id LIMIT ?4",
        },
        "binds": ["owner_id", "auth.sub", "on", "limit"],
        "readOnly": True,
    }


def test_defaults_without_front_matter() -> None:
    logic = compile_logic("SELECT 1")
    assert logic["auth"] == "authenticated"
    assert logic["roles"] == []
    assert logic["connection"] == "main"
    assert logic["params"] == {}
    assert logic["condition"] is None
    assert logic["binds"] == []


def test_empty_front_matter_and_bom_and_crlf() -> None:
    logic = compile_logic("\ufeff---\r\n---\r\nSELECT :auth.sub\r\n")
    assert logic["sql"]["postgresql"] == "SELECT $1"


def test_logic_names_come_from_paths() -> None:
    release = compile_release(
        {"logics/admin/users.sql": "SELECT 1", "logics/a-b_c.sql": "SELECT 1"}, connections=None
    )
    assert set(release.doc["logics"]) == {"admin/users", "a-b_c"}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("---\nauth: public\nmethod: GET\n---\nSELECT 1", 3, "unknown key 'method'"),
        ("---\nauth: anyone\n---\nSELECT 1", 2, "auth must be public or authenticated"),
        ("---\nroles: admin\n---\nSELECT 1", 2, "`roles` must be a non-empty list"),
        ("---\nroles: []\n---\nSELECT 1", 2, "`roles` must be a non-empty list"),
        ("---\nconnection: Main!\n---\nSELECT 1", 2, "invalid connection alias"),
        ("---\ndescription: [a]\n---\nSELECT 1", 2, "description must be a string"),
        ("---\nparams: [a]\n---\nSELECT 1", 2, "params must be a mapping"),
        ("---\nparams:\n  a: string\n---\nSELECT :a", 3, "must be a mapping with `type`"),
        ("---\nparams:\n  a: {type: text}\n---\nSELECT :a", 3, "type must be one of"),
        ("---\nparams:\n  a: {type: int, max: 3}\n---\nSELECT :a", 3, "unknown key 'max'"),
        ("---\nparams:\n  a:\n    type: int\n    required: 1\n---\nSELECT :a", 5, "required must"),
        ("---\nparams:\n  a: {type: int, default: '5'}\n---\nSELECT :a", 3, "default must be"),
        ("---\nparams:\n  a: {type: int, default: 1.5}\n---\nSELECT :a", 3, "default must be"),
        ("---\nparams:\n  a: {type: int, default: true}\n---\nSELECT :a", 3, "default must be"),
        ("---\nparams:\n  a: {type: bool, default: 1}\n---\nSELECT :a", 3, "default must be"),
        ("---\nparams:\n  a: {type: json, default: x}\n---\nSELECT :a", 3, "default must be"),
        ("---\nparams:\n  a: {type: string, default: 5}\n---\nSELECT :a", 3, "default must be"),
        (
            "---\nparams:\n  a: {type: int, required: true, default: 1}\n---\nSELECT :a",
            3,
            "cannot have a default",
        ),
        ("---\nparams:\n  1a: {type: int}\n---\nSELECT 1", 3, "invalid param name '1a'"),
        ("---\nparams:\n  auth: {type: int}\n---\nSELECT 1", 3, "invalid param name 'auth'"),
        ("---\ncondition: resource.a == 1\n---\nSELECT 1", 2, "unsupported"),
        ("---\ncondition: request.auth.sub ==\n---\nSELECT 1", 2, "invalid CEL"),
        ("---\ncondition: request.params.nope == 1\n---\nSELECT 1", 2, "undeclared param 'nope'"),
        ("---\nauth: [\n---\nSELECT 1", 3, "invalid YAML"),
        ("---\n- a\n---\nSELECT 1", 2, "front matter must be a YAML mapping"),
        ("---\nauth: public\nSELECT 1", 1, "never closed"),
        ("---\nauth: public\n---\n\nSELECT :nope", 5, "undeclared param ':nope'"),
        ("SELECT 1,\n  :auth.name", 2, "unknown system variable ':auth.name'"),
        ("---\n---\nSELECT 1;\nSELECT 2;", 4, "exactly one SQL statement"),
        ("---\n---\n-- nothing", 3, "no SQL statement"),
        ("---\n---\nSELECT\n'open", 4, "unterminated string literal"),
    ],
)
def test_logic_problems_name_file_and_line(text: str, line: int, fragment: str) -> None:
    got_line, message = only(text)
    assert fragment in message
    assert got_line == line


def test_connection_must_be_configured() -> None:
    text = "---\nconnection: analytics\n---\nSELECT 1"
    assert only(text, ["main"]) == (2, "connection 'analytics' is not configured for this env")
    assert compile_logic(text, ["main", "analytics"])["connection"] == "analytics"
    assert compile_logic(text, None)["connection"] == "analytics"


def test_every_problem_of_a_logic_is_reported() -> None:
    text = "---\nauth: nobody\nparams:\n  a: {type: nope}\n---\nSELECT :a, :b,\n :auth.x; SELECT 2"
    details = problems(text)
    assert [(p["line"], p["message"].split(" (")[0]) for p in details] == [
        (2, "auth must be public or authenticated"),
        (4, "param 'a': type must be one of string, int, float, bool, json"),
        (6, "undeclared param ':b'"),
        (7, "a logic must contain exactly one SQL statement"),
        (7, "unknown system variable ':auth.x'"),
    ]


def test_broken_front_matter_does_not_flood_with_undeclared_params() -> None:
    details = problems("---\nparams: {a: {type: int}\n---\nSELECT :a, :b")
    assert len(details) == 1
    assert "invalid YAML" in details[0]["message"]


def test_whitespace_in_front_matter_keeps_the_id() -> None:
    a = compile_release({"logics/x.sql": FULL}, connections=None)
    b = compile_release(
        {
            "logics/x.sql": FULL.replace("limit:    {", "limit: {").replace(
                "---\nauth", "---\n\nauth"
            )
        },
        connections=None,
    )
    assert a.id == b.id
    c = compile_release(
        {"logics/x.sql": FULL.replace("ORDER BY id", "ORDER BY name")}, connections=None
    )
    assert c.id != a.id
