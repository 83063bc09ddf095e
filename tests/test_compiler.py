"""Release compiler: file names, schema, permissions, auth settings, ids, the demo project."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from tenancy.errors import BadRequest, PublishError
from tenancy.releases.compile.compiler import compile_release, load_project_dir

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"

SCHEMA = """\
version: 1
tables:
  users:
    id: {name: id, generate: uuid_v4}
    columns:
      email: {type: string, nullable: false, unique: true}
  posts:
    columns:
      title: {type: string, nullable: false}
      author_id:
        type: uuid
        references: {table: users, as: author, onDelete: cascade}
      tags: {type: array, items: string}
      created_at: {type: timestamp, nullable: false, default: now}
    indexes:
      - {columns: [title]}
"""

PERMISSIONS = """\
tables:
  posts:
    select:
      - roles: [admin]
        columns: ["*"]
      - roles: [authenticated]
        condition: resource.author_id == request.auth.sub
        columns: [id, title]
    insert:
      roles: [authenticated]
      columns: [title, author_id]
"""


def d(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def project(**overrides: str | None) -> dict[str, str]:
    files = {"schema/app.yaml": SCHEMA, "config/permissions.yaml": PERMISSIONS}
    for key, value in overrides.items():
        path = key.replace("__", "/").replace("_yaml", ".yaml").replace("_sql", ".sql")
        if value is None:
            files.pop(path, None)
        else:
            files[path] = value
    return files


def problems(files: dict[str, Any], connections: list[str] | None = None) -> list[dict[str, Any]]:
    with pytest.raises(PublishError) as info:
        compile_release(files, connections=connections)
    assert isinstance(info.value, BadRequest)
    details = info.value.details
    assert details
    return details


def find(details: list[dict[str, Any]], fragment: str) -> dict[str, Any]:
    hits = [p for p in details if fragment in p["message"]]
    assert hits, f"no problem containing {fragment!r} in {details}"
    return hits[0]


def schema_problem(schema: str, fragment: str) -> dict[str, Any]:
    problem = find(problems(project(schema__app_yaml=d(schema))), fragment)
    assert problem["file"] == "schema/app.yaml"
    return problem


# ---- the whole release --------------------------------------------------------------------------


def test_valid_project_compiles_to_canonical_json() -> None:
    release = compile_release(project(), connections=["main"])
    assert release.id == hashlib.sha256(release.body).hexdigest()
    assert release.body == orjson.dumps(orjson.loads(release.body), option=orjson.OPT_SORT_KEYS)
    assert b" " not in release.body.replace(b'" "', b"")  # no whitespace outside strings
    assert release.doc == orjson.loads(release.body)
    posts = release.doc["tables"]["posts"]
    assert posts["connection"] == "main"
    assert posts["id"] == {"name": "id", "generate": "ulid"}
    assert [c["name"] for c in posts["columns"]] == [
        "id",
        "title",
        "author_id",
        "tags",
        "created_at",
    ]
    author = posts["columns"][2]
    assert author["references"] == {
        "table": "users",
        "column": "id",
        "as": "author",
        "onDelete": "cascade",
        "onUpdate": "no_action",
    }
    assert posts["columns"][3]["items"] == {"type": "string"}
    assert posts["columns"][4]["default"] == {"kind": "now"}
    assert posts["indexes"] == [{"name": "posts_title_idx", "columns": ["title"], "unique": False}]
    assert release.doc["tables"]["users"]["columns"][0]["type"] == "uuid"
    select = release.doc["permissions"]["posts"]["select"]
    assert select[0] == {"roles": ["admin"], "columns": None, "filters": [], "gate": None}
    assert select[1]["filters"] == [{"column": "author_id", "value": {"kind": "auth.sub"}}]
    assert release.doc["auth"] == {
        "signup": {"enabled": False, "roles": []},
        "tokens": {"accessTtlSeconds": 900, "refreshTtlSeconds": 2592000},
        "cors": {"origins": []},
    }


def test_same_files_same_id_and_meaningless_yaml_changes_keep_it() -> None:
    first = compile_release(project(), connections=None)
    assert compile_release(project(), connections=["main"]).id == first.id
    reformatted = (
        "# a comment\n"
        + SCHEMA.replace(": {", ":   {").replace("version: 1", "version:    1   # still one")
        + "\n\n"
    )
    flow_style = PERMISSIONS.replace(
        "roles: [authenticated]\n      columns: [title, author_id]",
        ("roles:\n        - authenticated\n      columns:\n        - title\n        - author_id"),
    )
    assert flow_style != PERMISSIONS
    same = compile_release(
        project(schema__app_yaml=reformatted, config__permissions_yaml=flow_style), connections=None
    )
    assert same.id == first.id
    changed = compile_release(
        project(schema__app_yaml=SCHEMA.replace("title]}", "title], unique: true}")),
        connections=None,
    )
    assert changed.id != first.id


def test_many_problems_in_many_files_are_reported_at_once() -> None:
    files = project(
        schema__app_yaml=SCHEMA.replace("type: uuid", "type: uuidd").replace(
            "nullable: false, unique", "nullable: maybe, unique"
        ),
        config__permissions_yaml=PERMISSIONS.replace("[title, author_id]", "[title, nope]"),
        config__auth_yaml="signup: {enabled: yes}\n",
        logics__a_sql="SELECT :x",
        logics__b_sql="---\nauth: everyone\n---\nSELECT 1; SELECT 2",
    )
    details = problems({**files, "README.md": "hello"})
    files_with_problems = {p["file"] for p in details}
    assert files_with_problems == {
        "schema/app.yaml",
        "config/permissions.yaml",
        "config/auth.yaml",
        "logics/a.sql",
        "logics/b.sql",
        "README.md",
    }
    assert len(details) >= 7
    assert details == sorted(details, key=lambda p: (p["file"], p.get("line", 0)))


def test_demo_project_compiles_cleanly() -> None:
    files = load_project_dir(DEMO)
    assert sorted(files) == [
        "config/auth.yaml",
        "config/permissions.yaml",
        "config/storage.yaml",
        "logics/admin/activity.sql",
        "logics/notebooks/summary.sql",
        "logics/notes/mine.sql",
        "logics/notes/pin.sql",
        "logics/public/stats.sql",
        "schema/app.yaml",
    ]
    release = compile_release(files, connections=["main"])
    assert set(release.doc["logics"]) == {
        "admin/activity",
        "notebooks/summary",
        "notes/mine",
        "notes/pin",
        "public/stats",
    }
    assert set(release.doc["storage"]["buckets"]) == {"uploads"}
    assert [p["pattern"] for p in release.doc["storage"]["policies"]] == [
        "users/{userId}/*",
        "public/*",
    ]
    assert compile_release(load_project_dir(DEMO), connections=None).id == release.id


def test_load_project_dir_reads_only_publishable_files(tmp_path: Path) -> None:
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "a.yaml").write_text("tables: {}\n")
    (tmp_path / "schema" / "notes.txt").write_text("ignored")
    (tmp_path / "logics" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "logics" / "deep" / "er" / "x.sql").write_text("SELECT 1")
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "sqlite.sql").write_text("CREATE TABLE t (x INT)")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.sql"
    outside.write_text("SELECT 2")
    (tmp_path / "logics" / "link.sql").symlink_to(outside)
    assert load_project_dir(tmp_path) == {
        "schema/a.yaml": "tables: {}\n",
        "logics/deep/er/x.sql": "SELECT 1",
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "auth.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(PublishError) as info:
        load_project_dir(tmp_path)
    assert info.value.details == [
        {"file": "config/auth.yaml", "message": "file is not valid UTF-8"}
    ]


# ---- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../schema/app.yaml",
        "schema/../config/auth.yaml",
        "/schema/app.yaml",
        "schema\\app.yaml",
        "schema//app.yaml",
        "./schema/x.yaml",
        "logics/a\x00.sql",
    ],
)
def test_unsafe_paths_are_problems(path: str) -> None:
    problem = find(problems({**project(), path: "x: 1"}), "invalid file path")
    assert problem["file"] == path


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        "schema/app.yml",
        "schema/nested/app.yaml",
        "config/other.yaml",
        "logics/x.txt",
        "logics/x.SQL",
        "seed/sqlite.sql",
        "permissions.yaml",
    ],
)
def test_unexpected_files_are_problems(path: str) -> None:
    problem = find(problems({**project(), path: "x: 1"}), "unexpected file")
    assert problem["file"] == path


def test_non_text_content_and_non_str_names_are_problems() -> None:
    details = problems({**project(), "logics/a.sql": b"SELECT 1", 7: "x"})  # type: ignore[dict-item]
    assert find(details, "must be text")["file"] == "logics/a.sql"
    assert find(details, "file name must be a string")["file"] == "7"


def test_oversized_file_is_a_problem() -> None:
    big = "-- " + "x" * 1_048_576 + "\nSELECT 1"
    assert (
        find(problems({**project(), "logics/big.sql": big}), "larger than")["file"]
        == "logics/big.sql"
    )


def test_unroutable_logic_name_is_a_problem() -> None:
    problem = find(problems({**project(), "logics/my logic.sql": "SELECT 1"}), "logic path")
    assert problem["file"] == "logics/my logic.sql"


def test_no_files_at_all_is_a_problem() -> None:
    assert find(problems({}), "no project files")


# ---- YAML ---------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line() -> None:
    problem = schema_problem("tables:\n  posts:\n    columns: [\n", "invalid YAML")
    assert problem["line"] == 4


def test_duplicate_yaml_keys_are_problems() -> None:
    problem = schema_problem(
        """
        tables:
          posts:
            columns:
              title: {type: string}
              title: {type: int}
        """,
        "duplicate key 'title'",
    )
    assert problem["line"] == 5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tables:\n  a: &x {columns: {}}\n  b: *x\n", "aliases"),
        ("tables:\n  a: !!python/object {}\n", "constructor"),
        ("tables:\n  a:\n    columns:\n      n: {type: float, default: .nan}\n", "finite"),
    ],
)
def test_unsafe_yaml_is_refused(text: str, fragment: str) -> None:
    schema_problem(text, fragment)


def test_yaml_1_1_surprises_stay_strings() -> None:
    release = compile_release(
        {
            "schema/app.yaml": d(
                """
                tables:
                  t:
                    columns:
                      on: {type: boolean, default: false}
                      day: {type: string, default: 2024-01-01}
                      when: {type: timestamp, default: 2024-01-01T10:00:00Z}
                """
            )
        },
        connections=None,
    )
    cols = {c["name"]: c for c in release.doc["tables"]["t"]["columns"]}
    assert "on" in cols
    assert cols["day"]["default"] == {"kind": "literal", "value": "2024-01-01"}
    assert cols["when"]["default"] == {"kind": "literal", "value": "2024-01-01T10:00:00Z"}


# ---- schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "fragment", "line"),
    [
        ("tables:\n  t:\n    colums: {}\n", "unknown key 'colums'", 3),
        (
            "tables:\n  t:\n    columns:\n      a: {type: string, nulable: true}\n",
            "unknown key 'nulable'",
            4,
        ),
        ("version: 2\ntables: {}\n", "version must be 1", 1),
        ("tables: []\n", "`tables` must be a mapping", 1),
        ("tables:\n  1bad: {}\n", "invalid table name", 2),
        ("tables:\n  t:\n    columns:\n      bad-name: {type: string}\n", "invalid column name", 4),
        ("tables:\n  t:\n    columns:\n      a: {type: bool}\n", "did you mean boolean", 4),
        ("tables:\n  t:\n    columns:\n      a: {type: varchar}\n", "type must be one of", 4),
        ("tables:\n  t:\n    columns:\n      a: string\n", "must be a mapping", 4),
        ("tables:\n  t:\n    columns:\n      a: {type: array}\n", "needs `items`", 4),
        (
            "tables:\n  t:\n    columns:\n      a: {type: array, items: varchar}\n",
            "items must be",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: string, items: string}\n",
            "only for type array",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: int, default: '5'}\n",
            "column 't.a': invalid default: expected a 64-bit integer",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: int, default: true}\n",
            "invalid default: expected a 64-bit integer",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: string, default: 5}\n",
            "invalid default: expected a string",
            4,
        ),
        ("tables:\n  t:\n    columns:\n      a: {type: boolean, default: 0}\n", "true or false", 4),
        (
            "tables:\n  t:\n    columns:\n      a: {type: timestamp, default: yesterday}\n",
            "ISO-8601",
            4,
        ),
        ("tables:\n  t:\n    columns:\n      a: {type: uuid, default: not-a-uuid}\n", "UUID", 4),
        ("tables:\n  t:\n    columns:\n      a: {type: bytes, default: '***'}\n", "base64", 4),
        ("tables:\n  t:\n    columns:\n      a: {type: decimal, default: abc}\n", "decimal", 4),
        (
            "tables:\n  t:\n    columns:\n      a: {type: int, default: 9223372036854775808}\n",
            "integer",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: array, items: int, default: [1, x]}\n",
            "invalid default: item [1]: expected a 64-bit integer",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a:\n        type: array\n"
            "        items: {type: array, items: int}\n        default: [[1], 2]\n",
            "invalid default: item [1]: expected an array",
            7,
        ),
        (
            'tables:\n  t:\n    columns:\n      a: {type: string, default: "a\\0b"}\n',
            "invalid default: NUL characters are not allowed",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: decimal, default: '1_000'}\n",
            "invalid default: expected a decimal string or a number",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: array, items: json, default: [1, ~]}\n",
            "invalid default: item [1]: null is not allowed inside an array",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: json, default: [18446744073709551616]}\n",
            "invalid default: not representable as JSON",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: timestamp, default: 5}\n",
            "invalid default: expected an ISO-8601 timestamp string or now",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      a: {type: string, nullable: 1}\n",
            "nullable must be true or false",
            4,
        ),
        ("tables:\n  t:\n    id: {generate: serial}\n", "id generate must be one of", 3),
        (
            "tables:\n  t:\n    id: {generate: ulid, type: int}\n",
            "only allowed with generate: client",
            3,
        ),
        ("tables:\n  t:\n    id: {generate: client, type: json}\n", "client id type", 3),
        ("tables:\n  t:\n    id: {name: id, generate: ulid, size: 5}\n", "unknown key 'size'", 3),
        (
            "tables:\n  t:\n    columns:\n      id: {type: string}\n",
            "collides with the id column",
            4,
        ),
        (
            "tables:\n  t:\n    columns:\n      Name: {type: string}\n      name: {type: string}\n",
            "collides with column 'Name'",
            5,
        ),
        ("tables:\n  t:\n    connection: Main\n", "invalid connection alias", 3),
        (
            "tables:\n  t:\n    indexes:\n      - {columns: [nope]}\n",
            "index on unknown column 'nope'",
            4,
        ),
        ("tables:\n  t:\n    indexes:\n      - {columns: []}\n", "non-empty list", 4),
        ("tables:\n  t:\n    indexes:\n      - {columns: [id, id]}\n", "column twice", 4),
        (
            "tables:\n  t:\n    indexes:\n      - {columns: [id], unique: yes}\n",
            "unique` must be true or false",
            4,
        ),
        (
            "tables:\n  t:\n    indexes:\n      - {columns: [id], name: t}\n",
            "clashes with table 't'",
            4,
        ),
        ("tables:\n  t:\n    indexes: {columns: [id]}\n", "`indexes` must be a list", 3),
    ],
)
def test_schema_problems(schema: str, fragment: str, line: int) -> None:
    assert schema_problem(schema, fragment)["line"] == line


def test_table_defined_twice_across_files() -> None:
    details = problems(
        {
            "schema/a.yaml": "tables:\n  t: {}\n",
            "schema/b.yaml": "\ntables:\n  t: {}\n  T: {}\n",
        }
    )
    twice = find(details, "already defined in schema/a.yaml")
    assert (twice["file"], twice["line"]) == ("schema/b.yaml", 3)
    folded = find(details, "collides with 't'")
    assert (folded["file"], folded["line"]) == ("schema/b.yaml", 4)


REF_SCHEMA = """
tables:
  users:
    connection: {users_conn}
    columns:
      email: {{type: string, unique: true}}
      nick: {{type: string}}
  posts:
    columns:
      author: {{type: {author_type}, nullable: {nullable}, references: {ref}}}
      author_id: {{type: string}}
"""


def ref_problem(fragment: str, **fields: str) -> dict[str, Any]:
    values = {
        "users_conn": "main",
        "author_type": "string",
        "nullable": "true",
        "ref": "{table: users}",
    }
    values.update(fields)
    return schema_problem(REF_SCHEMA.format(**values), fragment)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"ref": "{table: nobody}"}, "unknown table 'nobody'"),
        ({"ref": "{table: users, column: nope}"}, "unknown column 'users.nope'"),
        ({"ref": "{table: users, column: nick}"}, "must be the id or a unique column"),
        ({"author_type": "int"}, "does not match 'users.id' (string)"),
        ({"users_conn": "other"}, "another connection"),
        ({"ref": "{table: users, as: author_id}"}, "relation name 'author_id' is also a column"),
        ({"ref": "{table: users, onDelete: explode}"}, "onDelete must be one of"),
        ({"ref": "{table: users, onDelete: set_null}", "nullable": "false"}, "needs a nullable"),
        ({"ref": "users"}, "references must be a mapping"),
        ({"ref": "{table: users, cascade: true}"}, "unknown key 'cascade'"),
        ({"author_type": "json"}, "cannot reference"),
    ],
)
def test_reference_problems(fields: dict[str, str], fragment: str) -> None:
    assert ref_problem(fragment, **fields)["line"] == 9


def test_reference_to_a_unique_column_and_duplicate_relation_names() -> None:
    schema = d(
        """
        tables:
          users:
            columns:
              email: {type: string, unique: true}
          posts:
            columns:
              a: {type: string, references: {table: users, column: email, as: writer}}
              b: {type: string, references: {table: users, as: writer}}
        """
    )
    problem = schema_problem(schema, "relation name 'writer' is already used by 'a'")
    assert problem["line"] == 8
    ok = compile_release(
        {"schema/app.yaml": schema.replace("as: writer}}\n", "as: editor}}\n", 1)}, connections=None
    )
    ref = ok.doc["tables"]["posts"]["columns"][1]["references"]
    assert ref["column"] == "email"


def test_a_broken_definition_is_reported_once() -> None:
    schema = SCHEMA.replace("type: uuid", "type: uuidd").replace("[title]", "[author_id]")
    schema = schema.replace("  users:\n    id: {name: id, generate: uuid_v4}", "  users: 5\n  x:")
    schema += (
        "  comments:\n    columns:\n      user_id: {type: string, references: {table: users}}\n"
    )
    permissions = PERMISSIONS + "  users:\n    select: {roles: [a]}\n"
    details = problems(project(schema__app_yaml=schema, config__permissions_yaml=permissions))
    assert [p["message"] for p in details] == [
        "table 'users' must be a mapping",
        "column 'posts.author_id': type must be one of string, int, bigint, float, decimal, "
        "boolean, json, timestamp, uuid, bytes, array",
    ]


def test_table_connection_must_be_configured() -> None:
    schema = "tables:\n  t:\n    connection: analytics\n"
    problem = find(problems({"schema/app.yaml": schema}, ["main"]), "not configured")
    assert problem["line"] == 3
    release = compile_release({"schema/app.yaml": schema}, connections=["main", "analytics"])
    assert release.doc["tables"]["t"]["connection"] == "analytics"
    assert compile_release({"schema/app.yaml": schema}, connections=None)


def test_id_policies_and_types() -> None:
    release = compile_release(
        {
            "schema/app.yaml": d(
                """
                tables:
                  a: {id: {generate: auto_increment}}
                  b: {id: {name: key, generate: client, type: int}}
                  c: {id: {generate: uuid_v7}}
                  e: {id: {generate: nanoid}}
                  f: {id: {generate: client}}
                  g:
                    columns:
                      a_id: {type: int, references: {table: a}}
                      b_id: {type: bigint, references: {table: b, as: bee}}
                      c_id: {type: uuid, references: {table: c}}
                      n: {type: float, default: 1}
                      nested: {type: array, items: {type: array, items: int}, default: [[1, 2], []]}
                """
            )
        },
        connections=None,
    )
    tables = release.doc["tables"]
    assert tables["a"]["id"] == {"name": "id", "generate": "auto_increment"}
    assert tables["a"]["columns"][0]["type"] == "bigint"
    assert tables["b"]["columns"][0]["name"] == "key"
    assert tables["b"]["columns"][0]["type"] == "int"
    assert tables["c"]["columns"][0]["type"] == "uuid"
    assert tables["e"]["columns"][0]["type"] == "string"
    assert tables["f"]["columns"][0]["type"] == "string"
    g = {c["name"]: c for c in tables["g"]["columns"]}
    assert g["b_id"]["references"]["column"] == "key"
    assert g["n"]["default"] == {"kind": "literal", "value": 1.0}
    assert g["nested"]["items"] == {"type": "array", "items": {"type": "int"}}


def test_long_index_names_are_shortened_deterministically() -> None:
    cols = ", ".join(f"column_number_{i}" for i in range(6))
    defs = "\n".join(f"      column_number_{i}: {{type: string}}" for i in range(6))
    schema = f"tables:\n  t:\n    columns:\n{defs}\n    indexes:\n      - {{columns: [{cols}]}}\n"
    name = compile_release({"schema/app.yaml": schema}, connections=None).doc["tables"]["t"][
        "indexes"
    ][0]["name"]
    assert len(name) <= 63
    assert (
        name
        == compile_release({"schema/app.yaml": schema}, connections=None).doc["tables"]["t"][
            "indexes"
        ][0]["name"]
    )


# ---- permissions --------------------------------------------------------------------------------


COND = "tables:\n  posts:\n    update:\n      roles: [a]\n      condition: "


def perm_problem(text: str, fragment: str) -> dict[str, Any]:
    problem = find(problems(project(config__permissions_yaml=d(text))), fragment)
    assert problem["file"] == "config/permissions.yaml"
    return problem


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("tables:\n  ghosts:\n    select: {roles: [a]}\n", "unknown table 'ghosts'", 2),
        ("tables:\n  posts:\n    read: {roles: [a]}\n", "unknown key 'read'", 3),
        ("tables:\n  posts:\n    select: {roles: []}\n", "non-empty list", 3),
        ("tables:\n  posts:\n    select: {roles: admin}\n", "non-empty list", 3),
        ("tables:\n  posts:\n    select: {roles: [admin, 'bad role']}\n", "invalid role name", 3),
        ("tables:\n  posts:\n    select: {columns: [title]}\n", "non-empty list", 3),
        (
            "tables:\n  posts:\n    select:\n      - roles: [a]\n        colums: [x]\n",
            "unknown key 'colums'",
            5,
        ),
        (
            "tables:\n  posts:\n    select:\n      - roles: [a]\n        columns: [nope]\n",
            "unknown column 'nope'",
            5,
        ),
        (
            "tables:\n  posts:\n    select:\n      - roles: [a]\n        columns: ['*', title]\n",
            "only entry",
            5,
        ),
        (
            "tables:\n  posts:\n    select:\n      - roles: [a]\n        columns: [title, title]\n",
            "twice",
            5,
        ),
        (
            "tables:\n  posts:\n    select:\n      - roles: [a]\n        columns: []\n",
            "non-empty list",
            5,
        ),
        (
            "tables:\n  posts:\n    delete:\n      - roles: [a]\n        columns: [title]\n",
            "no meaning for delete",
            5,
        ),
        ("tables:\n  posts:\n    select: yes\n", "a rule or a list", 3),
        ("tables:\n  posts:\n    select: [admin]\n", "must be a mapping with `roles`", 3),
        (
            "tables:\n  posts:\n    select:\n      - roles: [a]\n\n"
            "        condition: resource.author_id != request.auth.sub\n",
            "unsupported",
            6,
        ),
        (
            COND + "resource.x == request.auth.sub\n",
            "unknown column 'x'",
            5,
        ),
        (
            COND + "resource.title == 5\n",
            "compares string column 'title' with 5",
            5,
        ),
        (
            COND + "resource.title == null\n",
            "non-nullable 'title' with null",
            5,
        ),
        (
            COND + "resource.tags == 'x'\n",
            "unsupported condition: a row filter cannot compare array",
            5,
        ),
        (
            COND + "request.auth.sub ==\n",
            "invalid CEL",
            5,
        ),
        ("tables: []\n", "`tables` must be a mapping", 1),
        ("tabels: {}\n", "unknown key 'tabels'", 1),
    ],
)
def test_permission_problems(text: str, fragment: str, line: int) -> None:
    assert perm_problem(text, fragment)["line"] == line


def test_permission_rules_keep_order_and_classify_conditions() -> None:
    text = d(
        """
        tables:
          posts:
            select:
              - roles: [reader, admin, reader]
                columns: [title, id]
              - roles: [authenticated]
                condition: '"editor" in request.auth.roles'
            update:
              roles: [authenticated]
              condition: resource.author_id == request.auth.sub && resource.title == "draft"
        """
    )
    doc = compile_release(project(config__permissions_yaml=text), connections=None).doc
    select = doc["permissions"]["posts"]["select"]
    assert select[0] == {
        "roles": ["admin", "reader"],
        "columns": ["title", "id"],
        "filters": [],
        "gate": None,
    }
    assert select[1]["gate"] == '"editor" in request.auth.roles'
    assert doc["permissions"]["posts"]["update"] == [
        {
            "roles": ["authenticated"],
            "columns": None,
            "filters": [
                {"column": "author_id", "value": {"kind": "auth.sub"}},
                {"column": "title", "value": {"kind": "literal", "value": "draft"}},
            ],
            "gate": None,
        }
    ]


# ---- auth.yaml ----------------------------------------------------------------------------------


def test_auth_settings_with_defaults() -> None:
    text = (
        "signup: {enabled: true, roles: [reader, reader]}\n"
        "cors: {origins: ['https://app.example.com', 'http://localhost:5173']}\n"
    )
    doc = compile_release(project(config__auth_yaml=text), connections=None).doc
    assert doc["auth"] == {
        "signup": {"enabled": True, "roles": ["reader"]},
        "tokens": {"accessTtlSeconds": 900, "refreshTtlSeconds": 2592000},
        "cors": {"origins": ["http://localhost:5173", "https://app.example.com"]},
    }


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("signup: {enabled: 1}\n", "signup.enabled", 1),
        ("signup: {roles: admin}\n", "signup.roles", 1),
        ("signup: {allow: true}\n", "unknown key 'allow'", 1),
        ("tokens:\n  accessTtlSeconds: 5\n", "from 60 to 86400", 2),
        ("tokens:\n  refreshTtlSeconds: 1.5\n", "refreshTtlSeconds must be an integer", 2),
        ("cors: {origins: ['https://app.example.com/']}\n", "not an origin", 1),
        ("cors: {origins: 'https://app.example.com'}\n", "must be a list", 1),
        ("cors: []\n", "`cors` must be a mapping", 1),
        ("users: {}\n", "unknown key 'users'", 1),
        ("- a\n", "must be a mapping", 1),
    ],
)
def test_auth_problems(text: str, fragment: str, line: int) -> None:
    problem = find(problems(project(config__auth_yaml=text)), fragment)
    assert (problem["file"], problem["line"]) == ("config/auth.yaml", line)


def test_refresh_shorter_than_access_is_a_problem() -> None:
    text = "tokens: {accessTtlSeconds: 3600, refreshTtlSeconds: 600}\n"
    assert find(problems(project(config__auth_yaml=text)), "must not be shorter")


def test_control_characters_are_a_problem_not_a_crash() -> None:
    """Found by the fuzz pass (tests/test_properties.py): PyYAML refuses them as it starts."""
    with pytest.raises(PublishError) as caught:
        compile_release({"schema/app.yaml": "\x1f"}, connections=None)
    assert caught.value.details[0]["message"].startswith("invalid YAML")
