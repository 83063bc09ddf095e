"""Schema apply at publish (`docs/project-files.md` step 4) on real PostgreSQL databases and SQLite
files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tenancy.errors import Conflict
from tenancy.releases.apply.ddl import sync_schema
from tenancy.releases.compile.compiler import compile_release, load_project_dir
from tenancy.releases.model import Release, Table

from support.bridge import running_bridge
from support.services import pg_database
from support.world import World

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


@dataclass
class Db:
    """A tenant database and a plain driver connection to look at it independently."""

    engine: str
    url: str
    path: Path | None = None

    async def execute(self, sql: str) -> None:
        if self.path is not None:
            with sqlite3.connect(self.path) as conn:
                conn.executescript(sql)
            return
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.path is not None:
            conn = sqlite3.connect(self.path)
            try:
                conn.execute("PRAGMA foreign_keys = ON")
                rows = conn.execute(sql, args).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        pg = await asyncpg.connect(self.url)
        try:
            return [tuple(r) for r in await pg.fetch(sql, *args)]
        finally:
            await pg.close()

    async def tables(self) -> set[str]:
        if self.path is not None:
            rows = await self.fetch(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        else:
            rows = await self.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        return {r[0] for r in rows}

    async def columns(self, table: str) -> list[str]:
        if self.path is not None:
            return [r[0] for r in await self.fetch("SELECT name FROM pragma_table_info(?)", table)]
        rows = await self.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return [r[0] for r in rows]

    def sql(self, text: str) -> str:
        """`$n` placeholders as the engine spells them."""
        return text if self.engine == "postgresql" else text.replace("$", "?")


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    if request.param == "postgresql":
        async with pg_database() as url:
            yield Db("postgresql", url)
        return
    path = tmp_path / "tenant.db"
    sqlite3.connect(path).close()
    yield Db("sqlite", f"sqlite:///{path}", path)


def tables_of(schema: str) -> list[Table]:
    compiled = compile_release({"schema/app.yaml": schema}, connections=None)
    return list(Release.load(compiled.body).tables.values())


async def apply(db: Db, schema: str, *, dry_run: bool = False) -> list[str]:
    return await sync_schema({"main": db.url}, tables_of(schema), apply=not dry_run)


V1 = """
version: 1
tables:
  users:
    columns:
      email: {type: string, nullable: false}
      age: {type: int}
"""


# ---- creating, adding, planning nothing twice -------------------------------------------------


async def test_the_demo_schema_is_created_from_empty_and_matches_the_seed(
    db: Db, tmp_path: Path
) -> None:
    tables = list(
        Release.load(compile_release(load_project_dir(DEMO), connections=None).body).tables.values()
    )
    ddl = await sync_schema({"main": db.url}, tables, apply=True)
    assert [s.split(" (")[0] for s in ddl] == [
        'CREATE TABLE "categories"',
        'CREATE TABLE "notebooks"',
        'CREATE TABLE "notes"',
        'CREATE INDEX IF NOT EXISTS "notebooks_owner_id_idx" ON "notebooks"',
        'CREATE INDEX IF NOT EXISTS "notes_owner_id_created_at_idx" ON "notes"',
        'CREATE INDEX IF NOT EXISTS "notes_notebook_id_idx" ON "notes"',
    ]
    assert await db.tables() == {"categories", "notebooks", "notes"}
    assert await sync_schema({"main": db.url}, tables, apply=True) == []
    # The hand-written seed DDL is what apply would create: nothing to do on top of it...
    seed = (DEMO / "seed" / f"{db.engine}.sql").read_text()
    if db.engine == "sqlite":
        seeded = Db("sqlite", f"sqlite:///{tmp_path / 'seed.db'}", tmp_path / "seed.db")
        await seeded.execute(seed)
        assert await sync_schema({"main": seeded.url}, tables, apply=False) == []
    else:
        async with pg_database() as url:
            await Db("postgresql", url).execute(seed)
            assert await sync_schema({"main": url}, tables, apply=False) == []
    # ...and its rows fit the tables apply created.
    await db.execute(seed)
    assert (await db.fetch("SELECT count(*) FROM notes"))[0][0] == 4


async def test_missing_columns_and_indexes_are_added_to_an_existing_table(db: Db) -> None:
    await apply(db, V1)
    await db.execute("INSERT INTO users (id, email) VALUES ('u1', 'a@example.com')")
    v2 = (
        V1
        + """      nick: {type: string, unique: true}
      plan: {type: string, nullable: false, default: free}
    indexes:
      - {columns: [age]}
      - {columns: [email], unique: true, name: users_email_uq}
"""
    )
    ddl = await apply(db, v2)
    text = "TEXT" if db.engine == "sqlite" else "text"
    nick = (
        f'ALTER TABLE "users" ADD COLUMN "nick" {text} UNIQUE'
        if db.engine == "postgresql"
        else f'ALTER TABLE "users" ADD COLUMN "nick" {text}'
    )
    expected = [
        nick,
        f'ALTER TABLE "users" ADD COLUMN "plan" {text} NOT NULL DEFAULT \'free\'',
        'CREATE INDEX IF NOT EXISTS "users_age_idx" ON "users" ("age")',
        'CREATE UNIQUE INDEX IF NOT EXISTS "users_email_uq" ON "users" ("email")',
    ]
    if db.engine == "sqlite":  # SQLite cannot ADD a UNIQUE column: a unique index stands in
        expected.insert(2, 'CREATE UNIQUE INDEX IF NOT EXISTS "users_nick_key" ON "users" ("nick")')
    assert ddl == expected
    assert await db.columns("users") == ["id", "email", "age", "nick", "plan"]
    assert await db.fetch("SELECT plan FROM users") == [("free",)]
    await db.execute("UPDATE users SET nick = 'ann'")
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await db.execute(
            "INSERT INTO users (id, email, nick) VALUES ('u2', 'b@example.com', 'ann')"
        )
    assert await apply(db, v2) == []


async def test_a_column_that_becomes_unique_gets_a_unique_index(db: Db) -> None:
    await apply(db, V1)
    ddl = await apply(db, V1.replace("nullable: false}", "nullable: false, unique: true}"))
    assert ddl == ['CREATE UNIQUE INDEX IF NOT EXISTS "users_email_key" ON "users" ("email")']
    assert await apply(db, V1.replace("nullable: false}", "nullable: false, unique: true}")) == []


async def test_a_dry_run_returns_the_plan_and_changes_nothing(db: Db) -> None:
    planned = await apply(db, V1, dry_run=True)
    assert len(planned) == 1 and planned[0].startswith('CREATE TABLE "users"')
    assert await db.tables() == set()
    assert await apply(db, V1) == planned


async def test_tables_are_created_before_the_tables_that_reference_them(db: Db) -> None:
    schema = """
version: 1
tables:
  a_child:
    columns:
      parent_id: {type: string, references: {table: z_parent}}
  z_parent:
    columns:
      name: {type: string}
      best_child: {type: string, references: {table: a_child}}
      boss_id: {type: string, references: {table: z_parent}}
"""
    ddl = await apply(db, schema)
    assert ddl[0].startswith('CREATE TABLE "z_parent"')
    assert ddl[1].startswith('CREATE TABLE "a_child"')
    if db.engine == "postgresql":  # the cycle's last key is added once both tables exist
        assert ddl[2:] == [
            'ALTER TABLE "z_parent" ADD FOREIGN KEY ("best_child") REFERENCES "a_child" ("id")'
        ]
    else:
        assert len(ddl) == 2
    assert await apply(db, schema) == []


# ---- what is not additive --------------------------------------------------------------------


async def test_non_additive_changes_are_refused_with_every_difference_and_nothing_changes(
    db: Db,
) -> None:
    await apply(db, V1 + "      nickname: {type: string}\n")
    v2 = """
version: 1
tables:
  users:
    columns:
      email: {type: string, nullable: true}
      age: {type: string, nullable: false}
      joined: {type: timestamp, nullable: false}
  extra:
    columns:
      note: {type: string}
"""
    with pytest.raises(Conflict) as caught:
        await apply(db, v2)
    details = caught.value.details or []
    assert caught.value.status == 409
    messages: dict[str, list[str]] = {}
    for d in details:
        assert d["connection"] == "main" and d["table"] == "users"
        messages.setdefault(d["column"], []).append(d["message"])
    assert set(messages) == {"email", "age", "nickname", "joined"}
    assert messages["email"] == ["NOT NULL in the database but nullable in the schema"]
    assert len(messages["age"]) == 2  # both problems of `age` are listed
    assert messages["age"][0].startswith("type differs")
    assert "tightening nullability" in messages["age"][1]
    assert "dropping a column" in messages["nickname"][0]
    assert "needs a default" in messages["joined"][0]
    assert "5 difference(s)" in caught.value.message
    # Nothing was applied, not even the additive part (the new table).
    assert await db.tables() == {"users"}
    assert await db.columns("users") == ["id", "email", "age", "nickname"]


async def test_a_renamed_id_column_is_a_difference(db: Db) -> None:
    await apply(db, V1)
    with pytest.raises(Conflict) as caught:
        await apply(db, V1.replace("columns:", "id: {name: uid}\n    columns:"))
    assert [(d["column"], d["message"].split(" (")[0]) for d in caught.value.details or []] == [
        ("id", "the column exists in the database but not in the schema"),
        ("uid", "the id column is missing"),
    ]


async def test_a_foreign_key_the_database_lacks_or_points_elsewhere_is_a_difference(db: Db) -> None:
    await db.execute(
        "CREATE TABLE teams (id TEXT PRIMARY KEY);"
        "CREATE TABLE people (id TEXT PRIMARY KEY, team_id TEXT,"
        " buddy_id TEXT REFERENCES teams (id))"
    )
    schema = """
version: 1
tables:
  teams: {}
  people:
    columns:
      team_id: {type: string, references: {table: teams}}
      buddy_id: {type: string, references: {table: people, onDelete: cascade}}
"""
    with pytest.raises(Conflict) as caught:
        await apply(db, schema)
    messages = {d["column"]: d["message"] for d in caught.value.details or []}
    assert messages["team_id"] == "the foreign key to teams(id) is missing in the database"
    assert messages["buddy_id"].startswith("the foreign key differs: the database has teams(")


async def test_names_taken_by_other_objects_are_differences(db: Db) -> None:
    await db.execute(
        "CREATE TABLE other (id TEXT PRIMARY KEY, x TEXT);"
        "CREATE VIEW users AS SELECT id FROM other;"
        "CREATE INDEX items_x_idx ON other (x)"
    )
    schema = """
version: 1
tables:
  users: {}
  items:
    columns:
      x: {type: string}
    indexes:
      - {columns: [x]}
"""
    with pytest.raises(Conflict) as caught:
        await apply(db, schema)
    assert [(d["table"], d["message"]) for d in caught.value.details or []] == [
        ("users", "the name is taken by a view in the database"),
        ("items", "index name 'items_x_idx' is taken by an index of other"),
    ]


async def test_sqlite_limits_of_add_column_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    sqlite3.connect(path).close()
    db = Db("sqlite", f"sqlite:///{path}", path)
    await apply(db, V1)
    v2 = (
        V1
        + """      seen_at: {type: timestamp, default: now}
      team_id: {type: string, nullable: false, default: t1, references: {table: users}}
"""
    )
    with pytest.raises(Conflict) as caught:
        await apply(db, v2)
    assert [d["column"] for d in caught.value.details or []] == ["seen_at", "team_id"]
    assert "default now" in (caught.value.details or [])[0]["message"]


async def test_postgresql_accepts_equivalent_existing_types(pg_url: str) -> None:
    db = Db("postgresql", pg_url)
    await db.execute(
        "CREATE TABLE t (id text PRIMARY KEY, a varchar(20), b integer, c json, d numeric(10,2),"
        " e varchar(5)[], f timestamp)"
    )
    schema = """
version: 1
tables:
  t:
    columns:
      a: {type: string}
      b: {type: int}
      c: {type: json}
      d: {type: decimal}
      e: {type: array, items: string}
      f: {type: timestamp}
"""
    with pytest.raises(Conflict) as caught:
        await apply(db, schema)
    assert [(d["column"], d["message"]) for d in caught.value.details or []] == [
        (
            "f",
            "type differs: the database has timestamp without time zone, "
            "the schema needs timestamptz (timestamp)",
        )
    ]


# ---- types and keys work once created ------------------------------------------------------

ALL_TYPES = """
version: 1
tables:
  everything:
    id: {name: id, generate: uuid_v4}
    columns:
      s: {type: string, default: "it's"}
      i: {type: int, default: -5}
      bi: {type: bigint, default: 9007199254740993}
      f: {type: float, default: 1.5}
      d: {type: decimal, default: "12.50"}
      b: {type: boolean, default: true}
      j: {type: json, default: {"k": [1, "two"]}}
      ts: {type: timestamp, default: "2024-01-02T05:04:05+02:00"}
      now_ts: {type: timestamp, nullable: false, default: now}
      u: {type: uuid, default: "6F9619FF-8B86-D011-B42D-00C04FC964FF"}
      by: {type: bytes, default: "AAEC/w=="}
      tags: {type: array, items: string, default: ["a", "b'c"]}
      nums: {type: array, items: int, default: []}
      grid: {type: array, items: {type: array, items: int}, default: [[1, 2], [3]]}
"""


async def test_every_type_round_trips_and_literal_defaults_apply(db: Db) -> None:
    await apply(db, ALL_TYPES)
    row_id = str(uuid.uuid4())
    if db.engine == "postgresql":
        conn = await asyncpg.connect(db.url)
        try:
            await conn.execute("INSERT INTO everything (id) VALUES ($1)", uuid.UUID(row_id))
            await conn.execute(
                "INSERT INTO everything (id, s, i, f, d, b, j, ts, u, by, tags, nums, grid) "
                "VALUES ($1, 'x', 1, 2.5, 3.25, false, '[1]', $2, $1, $3, $4, $5, '[[7]]')",
                uuid.uuid4(),
                datetime(2025, 5, 6, tzinfo=UTC),
                b"\x00\xff",
                ["p", "q"],
                [2**62],
            )
            row = await conn.fetchrow("SELECT * FROM everything WHERE id = $1", uuid.UUID(row_id))
        finally:
            await conn.close()
        assert row is not None
        assert (row["s"], row["i"], row["bi"], row["f"]) == ("it's", -5, 9007199254740993, 1.5)
        assert row["d"] == Decimal("12.50") and row["b"] is True
        assert json.loads(row["j"]) == {"k": [1, "two"]}
        assert row["ts"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert abs((datetime.now(UTC) - row["now_ts"]).total_seconds()) < 60
        assert row["u"] == uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        assert row["by"] == base64.b64decode("AAEC/w==")
        assert (row["tags"], row["nums"], json.loads(row["grid"])) == (
            ["a", "b'c"],
            [],
            [[1, 2], [3]],
        )
        return
    await db.execute(f"INSERT INTO everything (id) VALUES ('{row_id}')")
    await db.execute(
        "INSERT INTO everything (id, s, i, f, d, b, j, ts, u, by, tags, nums, grid) "
        "VALUES ('x', 'x', 1, 2.5, '3.25', 0, '[1]', '2025-05-06T00:00:00Z', 'u', X'00ff', "
        "'[\"p\"]', '[4611686018427387904]', '[[7]]')"
    )
    rows = await db.fetch(
        "SELECT s, i, bi, f, d, b, j, ts, now_ts, u, by, tags, nums, grid, typeof(d) "
        "FROM everything WHERE id = ?",
        row_id,
    )
    s, i, bi, f, d, b, j, ts, now_ts, u, by, tags, nums, grid, d_type = rows[0]
    assert (s, i, bi, f, d, b) == ("it's", -5, 9007199254740993, 1.5, "12.50", 1)
    assert d_type == "text"  # a decimal keeps its digits
    assert json.loads(j) == {"k": [1, "two"]} and ts == "2024-01-02T03:04:05.000Z"
    assert now_ts.endswith("Z")
    assert abs((datetime.now(UTC) - datetime.fromisoformat(now_ts)).total_seconds()) < 60
    assert u == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert by == base64.b64decode("AAEC/w==")
    assert (json.loads(tags), json.loads(nums), json.loads(grid)) == (
        ["a", "b'c"],
        [],
        [[1, 2], [3]],
    )


async def test_auto_increment_ids_and_foreign_key_actions_work(db: Db) -> None:
    schema = """
version: 1
tables:
  lists:
    id: {name: id, generate: auto_increment}
    columns:
      name: {type: string, nullable: false, unique: true}
  items:
    columns:
      list_id: {type: bigint, nullable: false, references: {table: lists, onDelete: cascade}}
      tag_list: {type: bigint, references: {table: lists, onDelete: set_null}}
"""
    await apply(db, schema)
    await db.execute("INSERT INTO lists (name) VALUES ('a'); INSERT INTO lists (name) VALUES ('b')")
    assert await db.fetch("SELECT id, name FROM lists ORDER BY id") == [(1, "a"), (2, "b")]
    await db.execute("INSERT INTO items (id, list_id, tag_list) VALUES ('i1', 1, 2), ('i2', 2, 1)")
    await db.fetch(db.sql("DELETE FROM lists WHERE id = $1"), 1)
    assert await db.fetch("SELECT id, list_id, tag_list FROM items") == [("i2", 2, None)]
    with pytest.raises((sqlite3.IntegrityError, asyncpg.ForeignKeyViolationError)):
        await db.fetch(db.sql("INSERT INTO items (id, list_id) VALUES ('i3', $1)"), 99)


# ---- transactions and concurrency -------------------------------------------------------------


async def test_a_failing_statement_rolls_back_the_whole_apply(db: Db) -> None:
    await apply(db, V1)
    await db.execute(
        "INSERT INTO users (id, email) VALUES ('u1', 'same@x.org'), ('u2', 'same@x.org')"
    )
    v2 = V1.replace("nullable: false}", "nullable: false, unique: true}") + (
        "      nick: {type: string}\n"
    )
    with pytest.raises(Conflict) as caught:
        await apply(db, v2)
    assert "users_email_key" in caught.value.message
    assert "connection 'main'" in caught.value.message
    assert await db.columns("users") == ["id", "email", "age"]  # `nick` was rolled back


async def test_concurrent_applies_create_once(db: Db) -> None:
    first, second = await asyncio.gather(apply(db, V1), apply(db, V1))
    assert sorted([len(first), len(second)]) == [0, 1]
    assert await db.tables() == {"users"}


# ---- through the admin API -------------------------------------------------------------------


async def test_publish_with_apply_schema_through_the_admin_api(db: Db, tmp_path: Path) -> None:
    (tmp_path / "bridge").mkdir()
    async with running_bridge(tmp_path / "bridge") as bridge:
        base = "/projects/shop/envs/prod"
        world = World(bridge)
        await world.project("shop", envs=["prod"])
        await world.connect("shop", "prod", db.url)

        async def publish(schema: str, **flags: bool) -> Any:
            files = {"schema/app.yaml": schema}
            return await bridge.admin("POST", f"{base}/releases", json={"files": files, **flags})

        r = await publish(V1, applySchema=True, dryRun=True)
        assert r.status_code == 201, r.text
        assert r.json()["dryRun"] is True and r.json()["ddl"][0].startswith('CREATE TABLE "users"')
        assert await db.tables() == set()
        assert (await bridge.admin("GET", f"{base}/releases/current")).status_code == 404

        r = await publish(V1)  # without applySchema the database is not looked at
        assert r.status_code == 201 and r.json()["ddl"] == []
        assert await db.tables() == set()

        r = await publish(V1, applySchema=True)
        assert r.status_code == 201, r.text
        assert r.json()["reused"] is True and len(r.json()["ddl"]) == 1
        assert await db.tables() == {"users"}
        r = await publish(V1, applySchema=True)
        assert r.status_code == 201 and r.json()["ddl"] == []

        v2 = V1.replace("age: {type: int}", "age: {type: string}\n      nick: {type: string}")
        r = await publish(v2, applySchema=True)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "CONFLICT"
        assert [(d["table"], d["column"]) for d in error["details"]] == [("users", "age")]
        assert await db.columns("users") == ["id", "email", "age"]
        current = (await bridge.admin("GET", f"{base}/releases/current")).json()
        assert "nick" not in json.dumps(current["compiled"]["tables"])

        # A statement failing at apply time publishes nothing either.
        await db.execute("INSERT INTO users (id, email) VALUES ('a', 'x'), ('b', 'x')")
        v3 = V1.replace("nullable: false}", "nullable: false, unique: true}")
        r = await publish(v3, applySchema=True)
        assert r.status_code == 409, r.text
        history = (await bridge.admin("GET", f"{base}/releases")).json()["items"]
        assert len(history) == 1


async def test_string_defaults_mean_the_same_without_standard_conforming_strings(
    pg_url: str,
) -> None:
    """Issue 9 row 11: a default is a constant whatever the server reads backslashes as."""
    name = pg_url.rpartition("/")[2]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET standard_conforming_strings = off')
    finally:
        await conn.close()
    schema = r"""
version: 1
tables:
  odd:
    columns:
      s: {type: string, default: 'a\b''c\'}
      j: {type: json, default: {k: 'x\y'}}
      by: {type: bytes, default: AAEC/w==}
      tags: {type: array, items: {type: string}, default: ['\n', "q'"]}
"""
    await sync_schema({"main": pg_url}, tables_of(schema), apply=True)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO odd (id) VALUES ('r1')")
        row = await conn.fetchrow("SELECT s, j, by, tags FROM odd")
    finally:
        await conn.close()
    assert row is not None
    assert row["s"] == "a\\b'c\\" and json.loads(row["j"]) == {"k": "x\\y"}
    assert row["by"] == b"\x00\x01\x02\xff" and row["tags"] == ["\\n", "q'"]
