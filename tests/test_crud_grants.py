"""What a CRUD call derives once and keeps: the rule and view per (release, table, op, role set)
(`tenancy.crud.views.grant`) — the same role set finds what it found before, another role set or
a new release finds its own, and the plan built from it follows — and a select's SQL text per
shape (`tenancy.crud.sql.SELECTS`), always the text it would render, values bound each time."""

from __future__ import annotations

from typing import Any

import pytest

from tenancy.crud.planner import plan_call
from tenancy.crud.sql import SELECTS, render
from tenancy.crud.views import GRANTS, grant
from tenancy.errors import Forbidden, Unauthorized
from tenancy.principal import ANONYMOUS, Principal
from tenancy.releases.compile.compiler import compile_release
from tenancy.releases.model import Release

SCHEMA = """
version: 1
tables:
  notes:
    id: {name: id, generate: ulid}
    columns:
      owner_id: {type: string, nullable: false}
      title: {type: string, nullable: false}
      secret: {type: string}
      amount: {type: decimal}
      n: {type: int}
"""


def release(permissions: str) -> Release:
    files = {"schema/app.yaml": SCHEMA, "config/permissions.yaml": permissions}
    return Release.load(compile_release(files, connections=["main"]).body)


FIRST = release("""
tables:
  notes:
    select:
      - roles: [editor]
      - roles: [authenticated]
        columns: [id, title]
        condition: resource.owner_id == request.auth.sub
""")
# The same tables, another grant for `authenticated`: a new release id.
SECOND = release("""
tables:
  notes:
    select:
      - roles: [authenticated]
        columns: [id, title, secret]
""")
# Where shapes over every kind of condition, in pairs: same shape, other values.
SHAPES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"where": {"title": "a"}}, {"where": {"title": "b"}}),
    (
        {
            "where": {"title": {"$like": "a%"}, "amount": {"$gt": "1.5"}},
            "orderBy": {"amount": "desc"},
        },
        {
            "where": {"title": {"$like": "b_"}, "amount": {"$gt": "2"}},
            "orderBy": {"amount": "desc"},
        },
    ),
    ({"where": {"n": {"$in": [1, 2, 3]}}}, {"where": {"n": {"$in": [4, 5, 6]}}}),
    (
        {"where": {"n": {"$nin": [1, 2]}}, "limit": 3},
        {"where": {"n": {"$nin": [7, 8]}}, "limit": 4},
    ),
    (
        {"where": {"secret": None, "title": {"$ilike": "x%"}}, "orderBy": {"n": "asc"}},
        {"where": {"secret": None, "title": {"$ilike": "y%"}}, "orderBy": {"n": "asc"}},
    ),
    (
        {"where": {"secret": {"$null": False}, "n": {"$lte": 1}}, "offset": 2},
        {"where": {"secret": {"$null": False}, "n": {"$lte": 9}}, "offset": 5},
    ),
]

USER = Principal("user", "u1", frozenset({"authenticated", "public"}))
EDITOR = Principal("user", "e1", frozenset({"editor", "authenticated", "public"}))


def select(rel: Release, who: Principal, params: dict[str, Any] | None = None) -> str:
    plan = plan_call(rel, rel.tables["notes"], "select", params or {}, who, max_rows=10)
    return render(plan, "postgresql").sql


def test_a_role_set_keeps_its_grant_and_another_role_set_gets_its_own() -> None:
    table = FIRST.tables["notes"]
    user = grant(FIRST, table, "select", USER.roles)
    hits = GRANTS.hits
    assert grant(FIRST, table, "select", frozenset(USER.roles)) is user  # an equal role set
    assert GRANTS.hits == hits + 1
    editor = grant(FIRST, table, "select", EDITOR.roles)
    assert user.rule is not None and editor.rule is not None and user.rule is not editor.rule
    assert user.view is not None and user.view.names == {"id", "title"}
    assert editor.view is not None
    assert editor.view.names == {"id", "owner_id", "title", "secret", "amount", "n"}
    assert select(FIRST, USER) == (
        'SELECT "id", "title" FROM "notes" WHERE "owner_id" = $1 LIMIT $2 OFFSET $3'
    )
    assert select(FIRST, EDITOR) == (
        'SELECT "id", "owner_id", "title", "secret", "amount", "n" FROM "notes" LIMIT $1 OFFSET $2'
    )
    with pytest.raises(Forbidden, match="Column 'secret'"):
        select(FIRST, USER, {"select": ["secret"]})


def test_a_new_release_gets_new_grants() -> None:
    assert FIRST.id != SECOND.id
    for rel in (FIRST, SECOND):  # both cached
        grant(rel, rel.tables["notes"], "select", USER.roles)
    second = grant(SECOND, SECOND.tables["notes"], "select", USER.roles)
    assert second.view is not None and second.view.names == {"id", "title", "secret"}
    assert select(SECOND, USER) == 'SELECT "id", "title", "secret" FROM "notes" LIMIT $1 OFFSET $2'
    assert select(SECOND, USER, {"select": ["secret"]}).startswith('SELECT "secret" FROM')
    with pytest.raises(Forbidden, match="Column 'secret'"):  # the first release is unchanged
        select(FIRST, USER, {"select": ["secret"]})


def test_no_rule_is_remembered_as_no_rule() -> None:
    for _ in range(2):  # the second time from the cache
        with pytest.raises(Unauthorized):
            select(FIRST, ANONYMOUS)
        with pytest.raises(Forbidden, match="Not allowed to select 'notes'"):
            select(SECOND, Principal("api_key", "k", frozenset({"reader"})))


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_a_cached_select_text_is_the_text_it_would_render(engine: Any) -> None:
    table = FIRST.tables["notes"]

    def plan(params: dict[str, Any]) -> Any:
        return plan_call(FIRST, table, "select", params, EDITOR, max_rows=10)

    for first, second in SHAPES:
        SELECTS.invalidate()
        fresh = render(plan(first), engine)
        other = render(plan(second), engine)  # the same shape: the cached text, its own values
        hits = SELECTS.hits
        again = render(plan(first), engine)
        assert SELECTS.hits == hits + 1
        assert again == fresh and other.sql == fresh.sql
        SELECTS.invalidate()
        assert render(plan(second), engine) == other  # as rendered without the cache
        assert other.args != fresh.args
    # Another number of values is another text where each value has its own placeholder.
    three, two = (
        render(plan(SHAPES[2][0]), engine),
        render(plan({"where": {"n": {"$in": [1, 2]}}}), engine),
    )
    assert (three.sql == two.sql) is (engine == "postgresql")
    assert two.args[0] == ([1, 2] if engine == "postgresql" else 1)
