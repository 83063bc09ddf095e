"""The auto-CRUD scenario: tenant `lab` on SQLite and on PostgreSQL, built with
`support.world.World` and driven through the real HTTP API (fixtures `lab` and `w`).

One Bridge and one tenant per test module and engine (module scope keeps the files fast); every
test starts from empty tables. Principals are API keys: `sub` is the key id, so each key is a
different caller. The tables are created here with DDL matching `docs/crud.md`'s type table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from support.bridge import running_bridge
from support.services import pg_database
from support.world import World

PROJECT = "lab"
MAX_ROWS = 50
KEYS = {"alice": [], "bob": [], "admin": ["admin"], "reader": ["reader"], "editor": ["editor"]}
ID_TABLES = ("k_ulid", "k_uuid4", "k_uuid7", "k_nanoid", "k_auto", "k_client")

SCHEMA = """
version: 1
tables:
  users:
    id: {name: id, generate: client}
    columns:
      name: {type: string, nullable: false}
      email: {type: string, unique: true}
  vault:
    id: {name: id, generate: ulid}
    columns:
      code: {type: string}
  posts:
    columns:
      author_id:
        type: string
        nullable: false
        references: {table: users, as: author, onDelete: cascade}
      reviewer_id: {type: string, references: {table: users, as: reviewer}}
      vault_id: {type: string, references: {table: vault, as: vault}}
      title: {type: string, nullable: false}
      body: {type: string}
      secret: {type: string}
      status: {type: string}
      score: {type: int}
      hits: {type: bigint}
      rating: {type: float}
      price: {type: decimal}
      published: {type: boolean, nullable: false, default: false}
      meta: {type: json}
      tags: {type: array, items: string}
      matrix: {type: array, items: {type: array, items: int}}
      extra: {type: array, items: json}
      stamps: {type: array, items: timestamp}
      amounts: {type: array, items: decimal}
      blob: {type: bytes}
      due: {type: timestamp}
      ref: {type: uuid}
      created_at: {type: timestamp, nullable: false, default: now}
  items:
    id: {name: id, generate: auto_increment}
    columns:
      name: {type: string, nullable: false}
      n: {type: int}
  gated:
    columns:
      kind: {type: string}
  k_ulid: {id: {generate: ulid}, columns: {label: {type: string}}}
  k_uuid4: {id: {generate: uuid_v4}, columns: {label: {type: string}}}
  k_uuid7: {id: {generate: uuid_v7}, columns: {label: {type: string}}}
  k_nanoid: {id: {generate: nanoid}, columns: {label: {type: string}}}
  k_auto: {id: {generate: auto_increment}, columns: {label: {type: string}}}
  k_client: {id: {generate: client}, columns: {label: {type: string}}}
"""

OWN = "resource.author_id == request.auth.sub"
POST_READ = (
    "[id, author_id, reviewer_id, vault_id, title, body, status, score, hits, rating, price,"
    " published, meta, tags, matrix, extra, stamps, amounts, blob, due, ref, created_at]"
)
POST_WRITE = (
    "[author_id, reviewer_id, vault_id, title, body, status, score, hits, rating, price, published,"
    " meta, tags, matrix, extra, stamps, amounts, blob, due, ref]"
)
PERMISSIONS = f"""
tables:
  users:
    select:
      - roles: [admin]
      - roles: [authenticated]
        condition: resource.id == request.auth.sub
        columns: [id, name]
    insert: {{roles: [admin]}}
  vault:
    select: {{roles: [admin]}}
  posts:
    select:
      - roles: [admin]
      - roles: [authenticated]
        condition: {OWN}
        columns: {POST_READ}
    insert:
      roles: [authenticated]
      condition: {OWN}
      columns: {POST_WRITE}
    update:
      roles: [authenticated]
      condition: {OWN}
      columns: [author_id, title, body, status, score, tags]
    delete:
      roles: [authenticated]
      condition: {OWN}
  items:
    select:
      - roles: [reader]
        columns: [id, name]
      - roles: [authenticated]
      - roles: [public]
        columns: [name]
    insert: {{roles: [authenticated]}}
  gated:
    select:
      roles: [authenticated]
      condition: '"editor" in request.auth.roles'
    insert:
      roles: [authenticated]
      condition: 'request.params.data.kind == "note"'
""" + "".join(
    f"  {t}:\n    select: {{roles: [authenticated]}}\n    insert: {{roles: [authenticated]}}\n"
    for t in ID_TABLES
)

# Logics over `json` params (docs/decisions.md "json logic params"); `cast` is PostgreSQL SQL,
# `extract` SQLite SQL, the others run on both.
_JSON_PARAM = "---\nparams:\n  j: {type: json}\n  id: {type: string}\n---\n"
LOGICS = {
    "logics/json/cast.sql": _JSON_PARAM + "SELECT :j::jsonb AS j, jsonb_typeof(:j::jsonb) AS kind",
    "logics/json/text.sql": _JSON_PARAM + "SELECT :j AS j",
    "logics/json/extract.sql": _JSON_PARAM + "SELECT json_extract(:j, '$.a') AS a",
    "logics/json/store.sql": _JSON_PARAM
    + "INSERT INTO posts (id, author_id, title, meta) VALUES (:id, :auth.sub, 'json', :j)",
}

PG_DDL = """
CREATE TABLE users (id text PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE vault (id text PRIMARY KEY, code text);
CREATE TABLE posts (
  id text PRIMARY KEY,
  author_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  reviewer_id text REFERENCES users (id),
  vault_id text REFERENCES vault (id),
  title text NOT NULL, body text, secret text, status text, score bigint, hits bigint,
  rating double precision, price numeric, published boolean NOT NULL DEFAULT false,
  meta jsonb, tags text[], matrix jsonb, extra jsonb[], stamps timestamptz[], amounts numeric[],
  blob bytea, due timestamptz, ref uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                    name text NOT NULL, n bigint);
CREATE TABLE gated (id text PRIMARY KEY, kind text);
CREATE TABLE k_ulid (id text PRIMARY KEY, label text);
CREATE TABLE k_uuid4 (id uuid PRIMARY KEY, label text);
CREATE TABLE k_uuid7 (id uuid PRIMARY KEY, label text);
CREATE TABLE k_nanoid (id text PRIMARY KEY, label text);
CREATE TABLE k_auto (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label text);
CREATE TABLE k_client (id text PRIMARY KEY, label text);
"""

SQLITE_DDL = """
CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE);
CREATE TABLE vault (id TEXT PRIMARY KEY, code TEXT);
CREATE TABLE posts (
  id TEXT PRIMARY KEY,
  author_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  reviewer_id TEXT REFERENCES users (id),
  vault_id TEXT REFERENCES vault (id),
  title TEXT NOT NULL, body TEXT, secret TEXT, status TEXT, score INTEGER, hits INTEGER,
  rating REAL,
  price TEXT, published INTEGER NOT NULL DEFAULT 0, meta TEXT, tags TEXT, matrix TEXT,
  extra TEXT, stamps TEXT, amounts TEXT,
  blob BLOB, due TEXT, ref TEXT,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, n INTEGER);
CREATE TABLE gated (id TEXT PRIMARY KEY, kind TEXT);
CREATE TABLE k_ulid (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE k_uuid4 (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE k_uuid7 (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE k_nanoid (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE k_auto (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT);
CREATE TABLE k_client (id TEXT PRIMARY KEY, label TEXT);
"""
TABLES = ("posts", "users", "vault", "items", "gated", *ID_TABLES)


@dataclass
class Lab:
    """The `lab` tenant's world, its engine and a direct connection to its database."""

    world: World
    engine: str
    db: Any  # sqlite3.Connection or asyncpg.Connection

    @property
    def bridge(self) -> Any:
        return self.world.bridge

    @property
    def ids(self) -> dict[str, str]:
        """Key name → key id (the caller's `sub`)."""
        return self.world.key_ids

    async def call(self, who: str | None, path: str, params: Any = None) -> httpx.Response:
        return await self.world.call(path, params, project=PROJECT, key=who)

    async def ok(self, who: str | None, path: str, params: Any = None) -> Any:
        r = await self.call(who, path, params)
        assert r.status_code == 200, (path, params, r.text)
        return r.json()["data"]

    async def fails(self, who: str | None, path: str, params: Any, status: int) -> str:
        r = await self.call(who, path, params)
        assert r.status_code == status, (path, params, r.text)
        assert r.json()["error"]["code"] == CODES[status]
        return str(r.json()["error"]["message"])

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the tenant database directly (no placeholders: the tests' own literals)."""
        if self.engine == "sqlite":
            return [tuple(row) for row in self.db.execute(sql).fetchall()]
        return [tuple(record) for record in await self.db.fetch(sql)]

    async def exec(self, sql: str) -> None:
        if self.engine == "sqlite":
            self.db.executescript(sql)
        else:
            await self.db.execute(sql)

    async def reset(self) -> None:
        await self.exec("".join(f"DELETE FROM {t};" for t in TABLES))
        users = [(name, self.ids[name]) for name in ("alice", "bob", "admin")]
        values = ", ".join(f"('{kid}', '{name}', '{name}@example.com')" for name, kid in users)
        await self.exec(f"INSERT INTO users (id, name, email) VALUES {values};")


CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
}


async def _build(data_dir: Path, engine: str, url: str, db: Any) -> AsyncIterator[Lab]:
    async with running_bridge(data_dir, select_max_rows=MAX_ROWS) as bridge:
        world = World(bridge, home=PROJECT)
        await world.project(PROJECT)
        files = {"schema/app.yaml": SCHEMA, "config/permissions.yaml": PERMISSIONS, **LOGICS}
        await world.tenant(PROJECT, "prod", url, files, KEYS)
        yield Lab(world, engine, db)


@pytest_asyncio.fixture(
    name="lab", scope="module", loop_scope="module", params=["sqlite", "postgresql"]
)
async def lab_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lab]:
    data_dir: Path = tmp_path_factory.mktemp(f"crud-{request.param}")
    if request.param == "sqlite":
        path = data_dir / "lab.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(SQLITE_DDL)
        try:
            async for lab in _build(data_dir, "sqlite", f"sqlite:///{path}", db):
                yield lab
        finally:
            db.close()
        return
    async with pg_database() as url:
        conn = await asyncpg.connect(url)
        await conn.execute(PG_DDL)
        try:
            async for lab in _build(data_dir, "postgresql", url, conn):
                yield lab
        finally:
            await conn.close()


@pytest_asyncio.fixture(name="w", loop_scope="module")
async def w_fixture(lab: Lab) -> Lab:
    """The module's tenant with empty tables and the three users alice, bob and admin."""
    await lab.reset()
    return lab
