"""Auto-CRUD (`docs/crud.md`) end to end over HTTP, on a SQLite and a PostgreSQL tenant database:
operators, pagination, values as JSON, type checks, id policies, writes, constraints, expand."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from typing import Any

import orjson
import pytest

from support.crud import MAX_ROWS, Lab

pytestmark = pytest.mark.asyncio(loop_scope="module")

U1, U2 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


async def post(w: Lab, who: str = "alice", **fields: Any) -> dict[str, Any]:
    data = {"author_id": w.ids[who], "title": "t", **fields}
    row: dict[str, Any] = await w.ok(who, "db/posts/insert", {"data": data})
    return row


async def titles(w: Lab, where: Any, who: str = "alice") -> set[str]:
    rows = await w.ok(who, "db/posts/select", {"where": where, "select": ["title"]})
    return {row["title"] for row in rows}


# ---- select: operators, ordering, pagination ---------------------------------------------------


async def test_every_where_operator(w: Lab) -> None:
    alpha = await post(
        w, title="Alpha", status="open", score=1, price="9.99", published=True, ref=U1,
        due="2024-01-01T10:00:00Z",
    )  # fmt: skip
    await post(
        w, title="beta", status="closed", score=2, price="10.00", ref=U2, body="b",
        due="2024-01-02T10:00:00+02:00",
    )  # fmt: skip
    await post(w, title="Gamma 100%", status="open", score=3, price=100, body="c", tags=["x"])
    await post(w, title="a_b", body="d")
    everyone = {"Alpha", "beta", "Gamma 100%", "a_b"}
    cases: list[tuple[Any, set[str]]] = [
        ({"status": "open"}, {"Alpha", "Gamma 100%"}),
        ({"status": None}, {"a_b"}),
        ({"status": {"$eq": "closed"}}, {"beta"}),
        ({"status": {"$eq": None}}, {"a_b"}),
        ({"status": {"$ne": "open"}}, {"beta"}),
        ({"status": {"$ne": None}}, {"Alpha", "beta", "Gamma 100%"}),
        ({"score": {"$gt": 1}}, {"beta", "Gamma 100%"}),
        ({"score": {"$gte": 2, "$lt": 3}}, {"beta"}),
        ({"score": {"$lte": 1}}, {"Alpha"}),
        ({"score": {"$in": [1, 3]}}, {"Alpha", "Gamma 100%"}),
        ({"score": {"$nin": [1, 3]}}, {"beta"}),
        ({"title": {"$like": "A%"}}, {"Alpha"}),
        ({"title": {"$like": "a%"}}, {"a_b"}),
        ({"title": {"$like": "alpha"}}, set()),
        ({"title": {"$like": "a\\_b"}}, {"a_b"}),
        ({"title": {"$like": "%100\\%"}}, {"Gamma 100%"}),
        ({"title": {"$like": "_eta"}}, {"beta"}),
        ({"title": {"$like": "%*%"}}, set()),
        ({"title": {"$like": "[a]%"}}, set()),
        ({"title": {"$ilike": "ALPHA"}}, {"Alpha"}),
        ({"title": {"$ilike": "%A%"}}, everyone),
        ({"title": {"$ilike": "g%"}}, {"Gamma 100%"}),
        ({"body": {"$null": True}}, {"Alpha"}),
        ({"body": {"$null": False}}, {"beta", "Gamma 100%", "a_b"}),
        ({"price": {"$gt": "9.995"}}, {"beta", "Gamma 100%"}),  # as numbers, not as text
        ({"price": 10}, {"beta"}),
        ({"price": {"$in": ["100.0", 9.99]}}, {"Alpha", "Gamma 100%"}),
        ({"due": {"$lte": "2024-01-01T11:00:00+01:00"}}, {"Alpha"}),
        ({"due": "2024-01-02T08:00:00Z"}, {"beta"}),
        ({"due": {"$gt": "2024-01-01T10:00:00Z"}}, {"beta"}),
        ({"published": True}, {"Alpha"}),
        ({"published": {"$ne": True}}, {"beta", "Gamma 100%", "a_b"}),
        ({"ref": U1.upper()}, {"Alpha"}),
        ({"ref": {"$in": [U1, U2]}}, {"Alpha", "beta"}),
        ({"id": alpha["id"]}, {"Alpha"}),
        ({"tags": {"$null": True}}, {"Alpha", "beta", "a_b"}),
        ({"status": "open", "score": {"$gt": 1}}, {"Gamma 100%"}),
        ({"title": {"$eq": "Alpha", "$ne": "beta"}}, {"Alpha"}),
        ({}, everyone),
    ]
    for where, expected in cases:
        assert await titles(w, where) == expected, where


async def test_pagination_and_order(w: Lab) -> None:
    for name, n in (("C", 2), ("A", 2), ("E", None), ("B", 1), ("D", 1)):
        await w.ok("alice", "db/items/insert", {"data": {"name": name, "n": n}})

    async def names(params: dict[str, Any]) -> list[str]:
        rows = await w.ok("alice", "db/items/select", {"select": ["name"], **params})
        return [row["name"] for row in rows]

    page = {"orderBy": {"name": "asc"}, "limit": 2, "offset": 2}
    assert await names(page) == ["C", "D"]
    assert await names({"orderBy": {"name": "desc"}}) == ["E", "D", "C", "B", "A"]
    assert await names({"orderBy": {"name": "DESC"}, "offset": 4}) == ["A"]
    assert await names({"orderBy": {"name": "Asc"}, "limit": 0}) == []
    # several keys in the given order; NULL sorts last ascending and first descending
    assert await names({"orderBy": {"n": "asc", "name": "desc"}}) == ["D", "B", "C", "A", "E"]
    assert await names({"orderBy": {"n": "desc", "name": "asc"}}) == ["E", "A", "C", "B", "D"]
    assert await names({"orderBy": {"name": "asc"}, "offset": 10}) == []


async def test_limit_defaults_to_the_maximum_and_is_bounded(w: Lab) -> None:
    values = ", ".join(f"('n{i:03d}', {i})" for i in range(MAX_ROWS + 10))
    await w.exec(f"INSERT INTO items (name, n) VALUES {values};")
    assert len(await w.ok("alice", "db/items/select")) == MAX_ROWS
    assert len(await w.ok("alice", "db/items/select", {"limit": MAX_ROWS})) == MAX_ROWS
    rest = await w.ok("alice", "db/items/select", {"orderBy": {"n": "asc"}, "offset": MAX_ROWS})
    assert [row["n"] for row in rest] == list(range(MAX_ROWS, MAX_ROWS + 10))
    for bad in (
        {"limit": MAX_ROWS + 1},
        {"limit": -1},
        {"limit": "5"},
        {"limit": True},
        {"limit": 1.0},
        {"offset": -1},
        {"offset": "1"},
        {"offset": 2**63},
    ):
        message = await w.fails("alice", "db/items/select", bad, 400)
        assert next(iter(bad)) in message


# ---- values ----------------------------------------------------------------------------------

FULL = {
    "title": "full",
    "score": 2**62,
    "hits": -(2**63),
    "rating": 1.5,
    "price": "12.50",
    "published": True,
    "meta": {"a": [1, {"b": None}], "s": "x"},
    "tags": ["x", "y"],
    "matrix": [[1, 2], [3]],
    "extra": [{"k": [1]}, [1, [2]], "s", 0.5, False, []],
    "amounts": ["1.50", "100"],
    "blob": base64.b64encode(b"\x00\xffbin").decode(),
    "due": "2024-05-01T12:00:00+02:00",
    "ref": U1.upper(),
}


async def test_values_come_back_as_json(w: Lab) -> None:
    stamps = ["2024-05-01T12:00:00+02:00", "2024-05-02T00:00:00.5Z"]
    row = await post(w, **FULL, stamps=stamps)
    assert ULID.match(row["id"])
    expected = {
        **FULL,
        "author_id": w.ids["alice"],
        "due": "2024-05-01T10:00:00+00:00",
        "stamps": ["2024-05-01T10:00:00+00:00", "2024-05-02T00:00:00.500000+00:00"],
        "ref": U1,
        "body": None,
        "status": None,
        "reviewer_id": None,
        "vault_id": None,
    }
    assert {k: row[k] for k in expected} == expected
    assert row["published"] is True
    assert STAMP.match(row["created_at"]), row["created_at"]
    (selected,) = await w.ok("alice", "db/posts/select", {"where": {"id": row["id"]}})
    assert selected == row
    for meta in ("just text", 0, False, [1, "2"], None):
        again = await post(w, meta=meta, price=12.5)
        assert again["meta"] == meta and again["price"] == "12.5"
    # what is stored is the engine's own form
    stored = await w.rows(
        f"SELECT published, price, due, meta, tags FROM posts WHERE id = '{row['id']}'"
    )
    if w.engine == "sqlite":
        assert stored == [(1, "12.50", "2024-05-01T10:00:00.000Z", '{"a":[1,{"b":null}],"s":"x"}',
                           '["x","y"]')]  # fmt: skip
    else:
        published, price, due, meta, tags = stored[0]
        assert published is True and str(price) == "12.50" and orjson.loads(meta) == FULL["meta"]
        assert due.isoformat() == "2024-05-01T10:00:00+00:00" and tags == ["x", "y"]


TYPE_ERRORS: list[tuple[str, Any, str]] = [
    ("title", 5, "'title'"),
    ("title", "a\x00b", "'title'"),
    ("title", None, "'title'"),
    ("score", "1", "'score'"),
    ("score", 1.5, "'score'"),
    ("score", True, "'score'"),
    ("score", 2**63, "'score'"),
    ("hits", -(2**63) - 1, "'hits'"),
    ("hits", "12", "'hits'"),
    ("rating", "1.0", "'rating'"),
    ("rating", False, "'rating'"),
    ("price", "abc", "'price'"),
    ("price", "NaN", "'price'"),
    ("price", "1_000", "'price'"),
    ("price", True, "'price'"),
    ("published", 1, "'published'"),
    ("published", "true", "'published'"),
    ("due", "yesterday", "'due'"),
    ("due", 1_700_000_000, "'due'"),
    ("ref", "not-a-uuid", "'ref'"),
    ("ref", 5, "'ref'"),
    ("blob", "!!not base64", "'blob'"),
    ("tags", "x", "'tags'"),
    ("tags", ["ok", 1], "'tags[1]'"),
    ("tags", ["ok", None], "'tags[1]'"),
    ("tags", [["nested"]], "'tags[0]'"),
    ("matrix", [1, 2], "'matrix[0]'"),
    ("matrix", [[1], ["x"]], "'matrix[1][0]'"),
    ("matrix", [[1], [2, [3]]], "'matrix[1][1]'"),
    ("matrix", [[2**63]], "'matrix[0][0]'"),
    ("stamps", ["2024-01-01", "soon"], "'stamps[1]'"),
    ("amounts", ["1", "1e"], "'amounts[1]'"),
]


async def test_wrong_types_are_400_naming_the_column(w: Lab) -> None:
    mine = await post(w, title="keep")
    for column, value, named in TYPE_ERRORS:
        data = {"author_id": w.ids["alice"], "title": "t", column: value}
        message = await w.fails("alice", "db/posts/insert", {"data": data}, 400)
        assert named in message, (column, value, message)
        if column in ("title", "score", "tags"):
            update = {"data": {column: value}, "where": {"id": mine["id"]}}
            assert named in await w.fails("alice", "db/posts/update", update, 400)
        if column in ("score", "price", "due", "ref", "published") and value is not None:
            where = {"where": {column: value}}
            assert f"'{column}'" in await w.fails("alice", "db/posts/select", where, 400)
    assert await w.rows("SELECT title FROM posts") == [("keep",)]
    # nested arrays that fit are stored and returned as they are, ragged included
    row = await post(w, matrix=[[1], [2, 3], []], tags=[])
    assert row["matrix"] == [[1], [2, 3], []] and row["tags"] == []


# ---- ids --------------------------------------------------------------------------------------


async def test_every_id_policy(w: Lab) -> None:
    async def insert(table: str, **data: Any) -> Any:
        return (await w.ok("alice", f"db/{table}/insert", {"data": data}))["id"]

    first, second = await insert("k_ulid", label="a"), await insert("k_ulid", label="b")
    assert ULID.match(first) and ULID.match(second) and first != second
    for table, version in (("k_uuid4", 4), ("k_uuid7", 7)):
        ids = []
        for label in "ab":
            ids.append(await insert(table, label=label))
            await asyncio.sleep(0.002)
        assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == version for i in ids)
        if version == 7:
            assert ids[0] < ids[1]  # time-ordered
    nano = [await insert("k_nanoid", label=x) for x in "ab"]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{21}", i) for i in nano) and nano[0] != nano[1]
    auto = [await insert("k_auto", label=x) for x in "ab"]
    assert all(type(i) is int for i in auto) and auto[1] > auto[0]
    assert await insert("k_client", id="c-1", label="a") == "c-1"
    message = await w.fails("alice", "db/k_client/insert", {"data": {"label": "x"}}, 400)
    assert "'id'" in message
    await w.fails("alice", "db/k_client/insert", {"data": {"id": "c-1"}}, 409)
    # a client id for a server-generated id is refused, well-formed or not
    for table, value in (
        ("k_ulid", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("k_uuid4", str(uuid.uuid4())),
        ("k_uuid7", str(uuid.uuid4())),
        ("k_nanoid", "V1StGXR8_Z5jdHi6B-myT"),
        ("k_auto", 99),
        ("posts", "p-1"),
    ):
        data = {"id": value, "label": "x"} if table != "posts" else {"id": value, "title": "x"}
        message = await w.fails("alice", f"db/{table}/insert", {"data": data}, 400)
        assert "'id'" in message and "generated" in message
    rows = await w.ok("alice", "db/k_client/select")
    assert rows == [{"id": "c-1", "label": "a"}]


# ---- insert, update, delete ---------------------------------------------------------------


async def test_insert_shapes(w: Lab) -> None:
    row = await w.ok("alice", "db/k_ulid/insert", {"values": {"label": "via values"}})
    assert row["label"] == "via values"
    empty = await w.ok("alice", "db/k_auto/insert", {"data": {}})
    assert empty["label"] is None
    for bad in (
        {},
        {"data": [["label", "x"]]},
        {"data": {"label": "x"}, "values": {"label": "y"}},
        {"data": {"label": "x"}, "where": {}},
        {"data": {"nope": 1}},
    ):
        await w.fails("alice", "db/k_ulid/insert", bad, 400)
    message = await w.fails(
        "alice", "db/posts/insert", {"data": {"author_id": w.ids["alice"]}}, 400
    )
    assert "'title'" in message
    assert len(await w.rows("SELECT id FROM k_ulid")) == 1


async def test_update_and_delete(w: Lab) -> None:
    for status in ("open", "open", "closed"):
        await post(w, status=status)
    params = {"data": {"title": "X"}, "where": {"status": "open"}}
    assert await w.ok("alice", "db/posts/update", params) == {"affected": 2}
    assert await titles(w, {"status": "open"}) == {"X"}
    params = {
        "values": {"score": 5, "tags": ["a", "b"]},
        "where": {"status": {"$in": ["open", "closed"]}},
    }
    assert await w.ok("alice", "db/posts/update", params) == {"affected": 3}
    rows = await w.ok("alice", "db/posts/select", {"select": ["score", "tags"]})
    assert rows == [{"score": 5, "tags": ["a", "b"]}] * 3
    assert await w.ok(
        "alice", "db/posts/update", {"data": {"score": 1}, "where": {"title": "zz"}}
    ) == {"affected": 0}
    for bad in (
        {"data": {"title": "Y"}},
        {"data": {"title": "Y"}, "where": {}},
        {"data": {"title": "Y"}, "where": []},
        {"data": {}, "where": {"status": "open"}},
        {"where": {"status": "open"}},
        {"data": {"id": "other"}, "where": {"status": "open"}},
        {"data": {"title": "Y"}, "where": {"status": "open"}, "limit": 1},
    ):
        await w.fails("alice", "db/posts/update", bad, 400)
    for bad in ({}, {"where": {}}, {"where": None}, {"where": {"status": "open"}, "data": {}}):
        await w.fails("alice", "db/posts/delete", bad, 400)
    assert await w.ok("alice", "db/posts/delete", {"where": {"status": "open"}}) == {"affected": 2}
    assert await titles(w, {}) == {"t"}


async def test_constraint_violations(w: Lab) -> None:
    user = {"id": "u9", "name": "n", "email": "alice@example.com"}
    assert "email" in await w.fails("admin", "db/users/insert", {"data": user}, 409)
    user = {"id": w.ids["bob"], "name": "n"}
    await w.fails("admin", "db/users/insert", {"data": user}, 409)
    await w.fails("alice", "db/posts/insert", {"data": {
        "author_id": w.ids["alice"], "title": "t", "reviewer_id": "ghost"}}, 400)  # fmt: skip
    data = {"author_id": w.ids["alice"], "title": None}
    assert "'title'" in await w.fails("alice", "db/posts/insert", {"data": data}, 400)
    assert await w.rows("SELECT id FROM posts") == []


# ---- expand -----------------------------------------------------------------------------------


async def test_expand_is_one_query_per_relation(w: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = w.ids["alice"], w.ids["bob"]
    await post(w, title="p1")
    await post(w, title="p2", reviewer_id=alice)
    await post(w, title="p3", reviewer_id=bob)
    statements: list[str] = []
    pools = w.bridge.rt.pools
    query = pools.query

    async def counting(key: Any, url: str, sql: Any, *args: Any, **kw: Any) -> Any:
        statements.append(sql)
        return await query(key, url, sql, *args, **kw)

    monkeypatch.setattr(pools, "query", counting)
    params = {"orderBy": {"title": "asc"}, "expand": ["author", "reviewer", "author"]}
    rows = await w.ok("alice", "db/posts/select", params)
    assert len(statements) == 3
    me = {"id": alice, "name": "alice"}
    assert [row["author"] for row in rows] == [me, me, me]
    assert [row["reviewer"] for row in rows] == [None, me, None]  # bob's user row is not hers
    statements.clear()
    rows = await w.ok("alice", "db/posts/select", {"select": ["title"], "expand": ["author"]})
    assert len(statements) == 2
    assert all(set(row) == {"title", "author"} and row["author"] == me for row in rows)
    statements.clear()
    none = {"where": {"title": "nothing"}, "expand": ["author", "reviewer"]}
    assert await w.ok("alice", "db/posts/select", none) == []
    assert len(statements) == 1
    admin_rows = await w.ok("admin", "db/posts/select", {"expand": ["author", "vault"]})
    assert {row["author"]["email"] for row in admin_rows} == {"alice@example.com"}
    assert all(row["vault"] is None for row in admin_rows)
    await w.fails("alice", "db/posts/select", {"expand": ["vault"]}, 403)
    await w.fails("alice", "db/posts/select", {"expand": ["nope"]}, 400)
    await w.fails("alice", "db/posts/select", {"expand": ["author_id"]}, 400)


# ---- shape --------------------------------------------------------------------------------------

BAD_SELECT: list[Any] = [
    {"where": []},
    {"where": "title = 'x'"},
    {"where": {"title": ["a"]}},
    {"where": {"title": {}}},
    {"where": {"title": {"$in": []}}},
    {"where": {"title": {"$in": "x"}}},
    {"where": {"title": {"$in": [None]}}},
    {"where": {"title": {"$in": [["x"]]}}},
    {"where": {"score": {"$in": list(range(1001))}}},
    {"where": {"score": {"$like": "1%"}}},
    {"where": {"title": {"$like": 1}}},
    {"where": {"title": {"$like": "abc\\"}}},
    {"where": {"meta": {"$eq": 1}}},
    {"where": {"tags": ["x"]}},
    {"where": {"meta": {"a": 1}}},
    {"where": {"title": {"$null": 1}}},
    {"where": {"title": {"$gt": None}}},
    {"where": {"title": {"$eq": {"$eq": "x"}}}},
    {"select": "title"},
    {"select": []},
    {"select": [1]},
    {"select": ["*"]},
    {"orderBy": ["title"]},
    {"orderBy": {"title": "up"}},
    {"orderBy": {"title": None}},
    {"orderBy": {"meta": "asc"}},
    {"expand": "author"},
    {"data": {"title": "x"}},
    {"unknown": 1},
]


async def test_malformed_select_params_are_400(w: Lab) -> None:
    await post(w)
    for params in BAD_SELECT:
        await w.fails("alice", "db/posts/select", params, 400)
