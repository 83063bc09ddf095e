"""Auto-CRUD permissions over HTTP on SQLite and PostgreSQL: 401 vs 403, first matching rule,
request gates, pipeline order, row filters between callers, forbidden columns, SQL injection."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from support.crud import Lab

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def post(w: Lab, who: str, **fields: Any) -> dict[str, Any]:
    data = {"author_id": w.ids[who], "title": "t", **fields}
    row: dict[str, Any] = await w.ok(who, "db/posts/insert", {"data": data})
    return row


async def count(w: Lab, table: str) -> int:
    return int((await w.rows(f"SELECT COUNT(*) FROM {table}"))[0][0])


# ---- who may call at all -------------------------------------------------------------------


async def test_unknown_table_is_404_for_everyone(w: Lab) -> None:
    for who in (None, "alice", "admin"):
        await w.fails(who, "db/nope/select", {"where": {"x": 1}}, 404)


async def test_no_matching_rule_is_401_anonymous_403_authenticated(w: Lab) -> None:
    for path in ("db/posts/select", "db/posts/insert", "db/users/select", "db/k_ulid/update"):
        await w.fails(None, path, {"where": {"id": "x"}}, 401)
    for who, path in (
        ("alice", "db/users/insert"),
        ("alice", "db/vault/select"),
        ("alice", "db/k_ulid/update"),
        ("alice", "db/k_ulid/delete"),
        ("reader", "db/posts/select"),  # holds `authenticated` too: the posts rule matches
    ):
        expected = 200 if who == "reader" else 403
        r = await w.call(who, path, {"where": {"id": "x"}})
        assert r.status_code == expected, (who, path, r.text)
    assert await w.ok(None, "db/items/select") == []


async def test_first_rule_whose_roles_match_wins(w: Lab) -> None:
    await w.ok("alice", "db/items/insert", {"data": {"name": "A", "n": 1}})
    assert await w.ok("alice", "db/items/select", {"select": ["name", "n"]}) == [
        {"name": "A", "n": 1}
    ]
    # reader also holds `authenticated`, whose rule would show `n`; the first rule decides
    (row,) = await w.ok("reader", "db/items/select")
    assert set(row) == {"id", "name"}
    await w.fails("reader", "db/items/select", {"select": ["n"]}, 403)
    await w.fails("reader", "db/items/select", {"where": {"n": 1}}, 403)
    assert await w.ok(None, "db/items/select") == [{"name": "A"}]
    await w.fails(None, "db/items/select", {"select": ["id"]}, 403)
    await w.fails(None, "db/items/select", {"orderBy": {"n": "asc"}}, 403)


async def test_request_gates(w: Lab) -> None:
    row = await w.ok("alice", "db/gated/insert", {"data": {"kind": "note"}})
    assert set(row) == {"id"}  # her select gate is false: the returned row is the id alone
    row = await w.ok("editor", "db/gated/insert", {"data": {"kind": "note"}})
    assert set(row) == {"id", "kind"}
    await w.fails("alice", "db/gated/insert", {"data": {"kind": "memo"}}, 403)
    await w.fails("alice", "db/gated/insert", {"data": {}}, 403)  # error in the gate: closed
    assert await count(w, "gated") == 2
    await w.fails("alice", "db/gated/select", {}, 403)
    assert [row["kind"] for row in await w.ok("editor", "db/gated/select")] == ["note", "note"]
    await w.fails(None, "db/gated/select", {}, 401)


async def test_pipeline_order(w: Lab) -> None:
    # rule lookup before params: an anonymous caller with nonsense params is told to sign in
    await w.fails(None, "db/posts/select", {"where": {"nope": 1}, "bogus": 2}, 401)
    # params (400) before column permissions (403)
    await w.fails("alice", "db/posts/select", {"select": ["secret"], "where": {"nope": 1}}, 400)
    await w.fails("alice", "db/posts/select", {"select": ["secret"], "limit": -1}, 400)
    data = {"author_id": w.ids["bob"], "title": "t", "secret": "s", "nope": 1}
    await w.fails("alice", "db/posts/insert", {"data": data}, 400)
    # column permissions before the condition: the column is what the message names
    data.pop("nope")
    assert "secret" in await w.fails("alice", "db/posts/insert", {"data": data}, 403)
    # params before the request gate
    await w.fails("alice", "db/gated/select", {"where": {"nope": 1}}, 400)
    await w.fails("alice", "db/gated/insert", {"data": {"kind": 5}}, 400)
    assert await count(w, "posts") == 0


# ---- rows of another caller ------------------------------------------------------------------

MARK = "BOB-PRIVATE"


async def test_rows_of_another_caller_are_out_of_reach(w: Lab) -> None:
    alice, bob = w.ids["alice"], w.ids["bob"]
    mine = await post(w, "alice", title="mine", reviewer_id=bob, status="open")
    theirs = await post(w, "bob", title=MARK, body=MARK, reviewer_id=alice, status="open")
    await w.exec(f"UPDATE posts SET secret = '{MARK}'")
    wheres: list[Any] = [
        None,
        {"author_id": bob},
        {"id": theirs["id"]},
        {"author_id": {"$ne": alice}},
        {"author_id": {"$in": [alice, bob]}},
        {"author_id": {"$null": False}},
        {"title": {"$like": "%"}},
        {"id": {"$nin": [mine["id"]]}},
        {"status": "open", "reviewer_id": alice},
    ]
    selects = [None, ["id", "title"], ["author_id", "body"]]
    orders = [None, {"title": "desc"}, {"author_id": "asc", "id": "desc"}]
    expands = [None, ["author"], ["reviewer", "author"]]
    for where, select, order, expand in itertools.product(wheres, selects, orders, expands):
        params = {"where": where, "select": select, "orderBy": order, "expand": expand}
        r = await w.call("alice", "db/posts/select", {k: v for k, v in params.items() if v})
        assert r.status_code == 200, (params, r.text)
        assert MARK not in r.text and "bob@example.com" not in r.text, params
        for row in r.json()["data"]:
            assert row.get("id", mine["id"]) == mine["id"], params
            assert row.get("author", {}).get("id", alice) == alice, params
            assert row.get("reviewer") is None, params  # bob's user row is bob's
    # bob's user row cannot be read directly either
    assert await w.ok("alice", "db/users/select", {"where": {"id": bob}}) == []
    # writes: every where that names bob's row leaves it untouched
    for op, params in (
        ("update", {"data": {"title": "pwned"}, "where": {"id": theirs["id"]}}),
        ("update", {"data": {"title": "pwned"}, "where": {"author_id": bob}}),
        ("delete", {"where": {"id": theirs["id"]}}),
        ("delete", {"where": {"author_id": bob}}),
    ):
        assert await w.ok("alice", f"db/posts/{op}", params) == {"affected": 0}
    for where in filter(None, wheres):
        update = {"data": {"title": "pwned", "body": "pwned"}, "where": where}
        r = await w.call("alice", "db/posts/update", update)
        assert r.status_code == 200 and r.json()["data"]["affected"] <= 1, (where, r.text)
        r = await w.call("alice", "db/posts/delete", {"where": where})
        assert r.status_code == 200 and r.json()["data"]["affected"] <= 1, (where, r.text)
    assert await w.rows(f"SELECT title, body FROM posts WHERE id = '{theirs['id']}'") == [
        (MARK, MARK)
    ]
    assert await w.rows(f"SELECT id FROM posts WHERE id = '{mine['id']}'") == []
    await w.fails(None, "db/posts/delete", {"where": {"id": theirs["id"]}}, 401)
    assert await count(w, "posts") == 1


async def test_row_filter_holds_for_written_values(w: Lab) -> None:
    alice, bob = w.ids["alice"], w.ids["bob"]
    data = {"author_id": bob, "title": "forged"}
    await w.fails("alice", "db/posts/insert", {"data": data}, 403)
    await w.fails("alice", "db/posts/insert", {"data": {"title": "no author"}}, 400)
    mine = await post(w, "alice", title="mine")
    # handing one's own row to another caller would step outside the filter
    give = {"data": {"author_id": bob}, "where": {"id": mine["id"]}}
    await w.fails("alice", "db/posts/update", give, 403)
    keep = {"data": {"author_id": alice, "title": "still mine"}, "where": {"id": mine["id"]}}
    assert await w.ok("alice", "db/posts/update", keep) == {"affected": 1}
    assert await w.rows("SELECT author_id, title FROM posts") == [(alice, "still mine")]


# ---- columns ---------------------------------------------------------------------------------


async def test_a_forbidden_column_is_never_read_nor_written(w: Lab) -> None:
    mine = await post(w, "alice", title="mine")
    assert "secret" not in mine  # insert RETURNING follows the select rule
    await w.exec("UPDATE posts SET secret = 'TOP-SECRET'")
    rows = await w.ok("alice", "db/posts/select", {"expand": ["author"]})
    assert "secret" not in rows[0] and set(rows[0]["author"]) == {"id", "name"}
    r = await w.call("alice", "db/posts/select", {"expand": ["author"]})
    assert "TOP-SECRET" not in r.text and "alice@example.com" not in r.text
    forbidden: list[tuple[str, Any]] = [
        ("db/posts/select", {"select": ["secret"]}),
        ("db/posts/select", {"select": ["id", "secret"]}),
        ("db/posts/select", {"where": {"secret": "TOP-SECRET"}}),
        ("db/posts/select", {"where": {"secret": {"$null": False}}}),
        ("db/posts/select", {"where": {"secret": {"$like": "TOP%"}}}),
        ("db/posts/select", {"orderBy": {"secret": "asc"}}),
        ("db/users/select", {"select": ["email"]}),
        ("db/users/select", {"where": {"email": {"$like": "a%"}}}),
        ("db/posts/insert", {"data": {"author_id": w.ids["alice"], "title": "t", "secret": "x"}}),
        ("db/posts/update", {"data": {"secret": "x"}, "where": {"id": mine["id"]}}),
        ("db/posts/update", {"data": {"published": True}, "where": {"id": mine["id"]}}),
        ("db/posts/update", {"data": {"title": "x"}, "where": {"secret": "TOP-SECRET"}}),
        ("db/posts/delete", {"where": {"secret": "TOP-SECRET"}}),
    ]
    for path, params in forbidden:
        await w.fails("alice", path, params, 403)
    assert await w.rows("SELECT title, secret FROM posts") == [("mine", "TOP-SECRET")]
    other = await post(w, "alice", title="other")
    assert "secret" not in other
    # the control: the admin rule shows every column, so the checks above can fail
    (row,) = await w.ok("admin", "db/posts/select", {"where": {"id": mine["id"]}})
    assert row["secret"] == "TOP-SECRET"
    emails = await w.ok("admin", "db/posts/select", {"select": ["id"], "expand": ["author"]})
    assert {row["author"]["email"] for row in emails} == {"alice@example.com"}


# ---- SQL injection -------------------------------------------------------------------------

INJECT = 'title" = "title" OR 1=1; DROP TABLE posts; --'
NAME_ATTACKS: list[tuple[str, Any]] = [
    ("select", {"where": {INJECT: "x"}}),
    ("select", {"where": {"title; DROP TABLE posts": "x"}}),
    ("select", {"where": {"title": {"$eq; DROP TABLE posts": "x"}}}),
    ("select", {"where": {"title": {"$or": ["x"]}}}),
    ("select", {"where": {"title": {"eq": "x"}}}),
    ("select", {"where": {"title": {"$regex": ".*"}}}),
    ("select", {"where": {"$or": [{"title": "x"}, {"1": 1}]}}),
    ("select", {"where": {"$where": "1=1"}}),
    ("select", {"select": ['id", (SELECT secret FROM posts) AS "x']}),
    ("select", {"select": ["secret AS title"]}),
    ("select", {"select": ["*"]}),
    ("select", {"select": ["posts.secret"]}),
    ("select", {"orderBy": {"(SELECT secret FROM posts)": "asc"}}),
    ("select", {"orderBy": {"title; DROP TABLE posts": "asc"}}),
    ("select", {"orderBy": {"title": "asc; DROP TABLE posts"}}),
    ("select", {"orderBy": {"title": "ASC NULLS FIRST"}}),
    ("select", {"orderBy": {"title": "desc, secret"}}),
    ("select", {"orderBy": {"1": "asc"}}),
    ("select", {"expand": ["author; DROP TABLE users"]}),
    ("select", {"expand": ["users"]}),
    ("select", {"expand": ['author" --']}),
    ("select", {"limit": "1; DROP TABLE posts"}),
    ("select", {"offset": "0 --"}),
    ("insert", {"data": {"title": "x", 'secret") VALUES (1); --': "y"}}),
    ("update", {"data": {"title\" = 'x', \"secret": "y"}, "where": {"title": "x"}}),
    ("update", {"data": {"title": "x"}, "where": {"1=1 OR title": "x"}}),
    ("delete", {"where": {'id" OR "1"="1': "x"}}),
]


@pytest.mark.parametrize(("op", "params"), NAME_ATTACKS, ids=range(len(NAME_ATTACKS)))
async def test_injection_through_names_is_400(w: Lab, op: str, params: Any) -> None:
    await post(w, "alice", title="x")
    await w.fails("alice", f"db/posts/{op}", params, 400)
    assert await w.rows("SELECT title, secret FROM posts") == [("x", None)]
    assert await count(w, "users") == 3


NASTY = [
    "Robert'); DROP TABLE posts;--",
    "' OR '1'='1",
    '"; DELETE FROM users; --',
    "$1 ?1 :name %s %(x)s {}",
    "back\\slash \\' \\\" %_*?[",
    "☃ 𝄞 \u202e ünïcödé",
    "x" * 5000,
]


async def test_injection_through_values_is_stored_verbatim(w: Lab) -> None:
    for text in NASTY:
        row = await post(w, "alice", title=text, body=text, status=text, meta={text: [text]})
        assert (row["title"], row["body"], row["meta"]) == (text, text, {text: [text]})
        wheres: list[Any] = [{"title": text}, {"status": {"$in": [text]}}]
        if not any(char in text for char in "%_\\"):
            wheres.append({"body": {"$ilike": text}})
        for where in wheres:
            rows = await w.ok("alice", "db/posts/select", {"where": where, "select": ["id"]})
            assert rows == [{"id": row["id"]}], where
        like = await w.ok("alice", "db/posts/select", {"where": {"title": {"$like": text}}})
        assert len(like) <= len(NASTY)
    stored = {title for (title,) in await w.rows("SELECT title FROM posts")}
    assert stored == set(NASTY)
    assert await count(w, "users") == 3
    await w.fails("alice", "db/posts/insert", {"data": {"title": "a\x00b"}}, 400)
