"""The logic SQL scanner: what is a binding, what is one statement, how both engines see it."""

from __future__ import annotations

import sqlite3

import pytest

from tenancy.releases.compile.logic_sql import is_read_only, scan_sql


def names(sql: str) -> list[str]:
    scanned = scan_sql(sql)
    assert scanned.problems == []
    return [b.name for b in scanned.bindings]


def render(sql: str) -> tuple[dict[str, str], tuple[str, ...]]:
    scanned = scan_sql(sql)
    assert scanned.problems == []
    return scanned.render(sql)


def test_numbers_follow_first_use_and_repeat_for_the_same_name() -> None:
    sql, binds = render("SELECT * FROM t WHERE a = :a AND b = :b OR a2 = :a LIMIT :n;")
    assert sql == {
        "postgresql": "SELECT * FROM t WHERE a = $1 AND b = $2 OR a2 = $1 LIMIT $3",
        "sqlite": "SELECT * FROM t WHERE a = ?1 AND b = ?2 OR a2 = ?1 LIMIT ?3",
    }
    assert binds == ("a", "b", "n")


def test_system_variables_are_dotted_names() -> None:
    assert names("SELECT :auth.sub, :auth.roles, :auth.type, :client.ip, :authx, :other.x") == [
        "auth.sub",
        "auth.roles",
        "auth.type",
        "client.ip",
        "authx",
        "other",
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ':no' FROM t",
        "SELECT 'it''s :no' FROM t",
        "SELECT E'a\\' :no' FROM t",
        'SELECT ":no" FROM t',
        'SELECT "a"":no" FROM t',
        "SELECT `:no` FROM t",
        "SELECT 1 -- :no\nFROM t",
        "SELECT 1 /* :no */ FROM t",
        "SELECT 1 /* outer /* :no */ still :no */ FROM t",
        "SELECT $$ :no ; $$ FROM t",
        "SELECT $fn$ :no $$ :no $fn$ FROM t",
        "SELECT x::text, y ::int FROM t",
        "SELECT a$b, c$1 FROM t",
        "SELECT arr[1 : 2] FROM t",
    ],
)
def test_nothing_is_scanned_inside_literals_comments_and_casts(sql: str) -> None:
    assert names(sql) == []


def test_cast_after_binding_keeps_the_binding() -> None:
    sql, binds = render("SELECT :tags::jsonb, :n::int")
    assert sql["postgresql"] == "SELECT $1::jsonb, $2::int"
    assert binds == ("tags", "n")


def test_plain_string_backslash_does_not_escape() -> None:
    # Standard SQL: 'a\' ends at the second quote, so :x after it is a binding.
    assert names("SELECT 'a\\', :x") == ["x"]


def test_surrounding_semicolons_whitespace_and_comments_are_dropped() -> None:
    sql, _ = render("  -- header\nSELECT 1 -- why\n ;  -- done\n;\n")
    assert sql["postgresql"] == "SELECT 1"
    sql, _ = render("SELECT 1 /* inner */ + 2")
    assert sql["postgresql"] == "SELECT 1 /* inner */ + 2"


@pytest.mark.parametrize(
    ("sql", "line", "fragment"),
    [
        ("SELECT 1;\nSELECT 2", 2, "exactly one SQL statement"),
        ("SELECT 1; -- fine\n\n  DELETE FROM t;", 3, "exactly one SQL statement"),
        ("-- nothing here\n/* or here */", 1, "no SQL statement"),
        ("", 1, "no SQL statement"),
        ("SELECT 1,\n'open", 2, "unterminated string literal"),
        ('SELECT\n\n"open', 3, "unterminated quoted identifier"),
        ("SELECT 1 /* open", 1, "unterminated /* comment"),
        ("SELECT\n$tag$ open $$", 2, "unterminated dollar-quoted string"),
        ("SELECT * FROM t\nWHERE id = $1", 2, "positional parameter $1"),
    ],
)
def test_problems_name_the_line(sql: str, line: int, fragment: str) -> None:
    problems = scan_sql(sql).problems
    assert len(problems) == 1, problems
    assert problems[0][0] == line
    assert fragment in problems[0][1]


def test_semicolon_inside_strings_and_comments_does_not_count() -> None:
    assert scan_sql("SELECT ';' /* ; */ -- ;\n, $$;$$, \";\"").problems == []


def test_line_numbers_are_offset_by_first_line() -> None:
    scanned = scan_sql("SELECT\n  :a,\n\n  :b", first_line=7)
    assert [(b.name, b.line) for b in scanned.bindings] == [("a", 8), ("b", 10)]


def test_rendered_sqlite_statement_runs_with_repeated_numbers() -> None:
    source = "SELECT :a AS a, :b AS b, :a || '-' || :b AS ab, ':a' AS literal"
    sql, binds = render(source)
    assert binds == ("a", "b")
    with sqlite3.connect(":memory:") as conn:
        row = conn.execute(sql["sqlite"], ["x", "y"]).fetchone()
    assert row == ("x", "y", "x-y", ":a")


@pytest.mark.parametrize(
    ("sql", "read_only"),
    [
        ("SELECT id, title FROM notes WHERE owner_id = :owner ORDER BY id", True),
        ("select count(*) as n, max(created_at) from notes group by owner_id", True),
        ("WITH recent AS (SELECT * FROM notes) SELECT coalesce(title, 'x') FROM recent", True),
        ("SELECT n.id FROM notes n JOIN (SELECT id FROM notebooks) nb ON nb.id = n.id", True),
        ("SELECT id FROM notes WHERE id IN (SELECT id FROM notes) AND EXISTS (SELECT 1)", True),
        ("SELECT 'DELETE FROM notes' AS text, \"update\" FROM t -- insert\n", True),
        ("SELECT $$ drop table x $$ AS s /* update */", True),
        ("VALUES (1), (2)", True),
        ("UPDATE counter SET n = n + 1", False),
        ("INSERT INTO notes (id) VALUES (:id)", False),
        ("WITH gone AS (DELETE FROM notes RETURNING id) SELECT count(*) FROM gone", False),
        ("SELECT * FROM notes FOR UPDATE", False),
        ("SELECT * INTO copy FROM notes", False),
        ("SELECT 1 AS n FROM pg_sleep(1)", False),
        ("SELECT nextval('seq')", False),
        ("SELECT set_config('x', 'y', false)", False),
        ("SELECT public.my_function(1)", False),
        ('SELECT "lower"(title) FROM notes', False),
        ("SELECT mine(:x)", False),
        ("DELETE FROM notes", False),
        ("SELECT 1; SELECT 2", False),
    ],
)
def test_a_logic_is_read_only_only_when_provably_so(sql: str, read_only: bool) -> None:
    assert is_read_only(sql, scan_sql(sql)) is read_only
