"""Malformed requests to the admin API and the data plane, one table.

For every case: the status and `error.code` are the ones the spec names, `error.requestId` equals
the `X-Request-Id` header, nothing answers 500, and nothing changed: projects, audit log,
connections, secrets, API keys, releases (the manifest) and the tenant database are as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from tenancy.registry.models import ApiKey, Secret

from support.bridge import ADMIN_TOKEN, Bridge, running_bridge
from support.services import registry_database
from support.world import World, demo_files, seeded_sqlite

MAX_BODY = 8192  # small, yet the demo project still fits in one publish body
HOST = "acme.api.example.com"
KEY = "<api key>"  # replaced by the tenant's real API key (roles [admin]) when sent
P = "/admin/v1/projects/acme/envs/prod"
ENV = P.removeprefix("/admin/v1")

BAD, UNAUTH, NOT_FOUND, CONFLICT, TOO_LARGE, METHOD = (
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "NOT_FOUND",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
    "METHOD_NOT_ALLOWED",
)


@dataclass
class Acme:
    """The tenant under test, and what must stay as it was after every bad request."""

    bridge: Bridge
    db: Path
    key: str
    baseline: dict[str, Any] = field(default_factory=dict)

    async def get(self, url: str) -> Any:
        r = await self.bridge.admin("GET", url, 200)
        return r.json()

    async def snapshot(self) -> dict[str, Any]:
        """Projects and audit log as the admin API shows them; secrets and keys (every tenant)
        straight from the registry; the manifest (every env's release and history)."""
        async with self.bridge.rt.sessions() as session:
            secrets = await session.execute(
                select(Secret.project, Secret.env, Secret.kind, Secret.name, Secret.version)
            )
            keys = await session.execute(select(ApiKey.key_id, ApiKey.status, ApiKey.last_used_at))
            registry = (sorted(map(tuple, secrets.all())), sorted(map(tuple, keys.all())))
        return {
            "projects": await self.get("/projects"),
            "audit": await self.get("/audit?limit=500"),
            "registry": registry,
            "manifest": await self.bridge.rt.releases.get_manifest("acme"),
            "rows": table_counts(self.db),
        }


def table_counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        tables = ("categories", "notebooks", "notes")
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


async def build(data_dir: Path, registry_url: str | None) -> AsyncIterator[Acme]:
    db = data_dir / "acme.db"
    url = seeded_sqlite(db)
    async with running_bridge(data_dir, registry_url, max_body_bytes=MAX_BODY) as bridge:
        world = World(bridge)
        await world.project("acme", envs=["prod", "dev"], hosts=["api.acme.test"])
        await world.project("globex")
        await world.connect("acme", "prod", url)
        await bridge.admin("PUT", f"{ENV}/secrets/API_TOKEN", 200, json={"value": "s3cret"})
        await world.publish("acme", "prod", demo_files())
        acme = Acme(bridge, db, await world.api_key("acme", "prod", "ci", ["admin"]))
        acme.baseline = await acme.snapshot()
        yield acme


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Acme]:
    data_dir = tmp_path_factory.mktemp(f"bad-input-{request.param}")
    async with registry_database(request.param) as url:
        async for acme in build(data_dir, url):
            yield acme


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    method: str
    url: str
    status: int
    code: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    admin_auth: bool = True
    chunked: bool = False
    word: str = ""  # expected in `error.message`, where the status alone does not tell the branch


def row(name: str, method: str, url: str, status: int, code: str, body: Any, **kw: Any) -> Any:
    """One row; a `bytes` body is sent verbatim, anything else as JSON."""
    raw = body if isinstance(body, bytes) else None
    data = None if isinstance(body, bytes) else body
    return pytest.param(Case(method, url, status, code, data, raw, **kw), id=name)


def auth(
    name: str,
    body: Any,
    status: int = 400,
    code: str = BAD,
    path: str = "/auth/login",
    **kw: Any,
) -> Any:
    """`POST /auth/...` on acme (by Host): refused before any account is looked at."""
    return row(
        name, "POST", path, status, code, body, headers={"Host": HOST}, admin_auth=False, **kw
    )


def call(
    name: str, body: Any, status: int = 400, code: str = BAD, headers: Any = None, **kw: Any
) -> Any:
    """`POST /call` on acme (by Host) unless `headers` say otherwise."""
    hdrs = {"Host": HOST} if headers is None else headers
    return row(name, "POST", "/call", status, code, body, headers=hdrs, admin_auth=False, **kw)


def path(name: str, value: Any, status: int = 400, code: str = BAD) -> Any:
    return call(name, {"path": value}, status, code)


def logic(name: str, logic_name: str, params: dict[str, Any]) -> Any:
    """A logic called with the tenant's API key (roles [admin])."""
    body = {"path": f"logics/{logic_name}", "params": params}
    return call(name, body, headers={"X-Santokit-Api-Key": KEY})


def create(name: str, body: Any, status: int = 400, code: str = BAD, **kw: Any) -> Any:
    return row(name, "POST", PROJECTS, status, code, body, **kw)


def patch(name: str, body: Any) -> Any:
    return row(name, "PATCH", f"{PROJECTS}/acme", 400, BAD, body)


def on_env(
    name: str, method: str, suffix: str, body: Any = None, status: int = 400, code: str = BAD
) -> Any:
    """A call under `/admin/v1/projects/acme/envs/prod`."""
    return row(name, method, f"{P}{suffix}", status, code, body)


def admin_case(
    name: str, method: str, url: str, status: int, code: str = BAD, body: Any = None
) -> Any:
    return row(name, method, url, status, code, body)


def no_auth(name: str, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
    return row(name, method, url, 401, UNAUTH, body, headers=headers or {}, admin_auth=False)


def nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def deep(prefix: bytes, depth: int) -> bytes:
    return prefix + b"[" * depth + b"]" * depth + b"}}"


def fullwidth(text: str) -> str:
    """`acme` → the FULLWIDTH LATIN letters that look the same."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in text)


PROJECTS = "/admin/v1/projects"
STATS = {"path": "logics/public/stats"}
BIG = {"path": "logics/public/stats", "params": {"pad": "x" * (MAX_BODY + 10)}}
BIG_PROJECT = {"id": "bigproject", "hosts": ["h.example.com"] * (MAX_BODY // 10)}
BIG_RELEASE = {"files": {"logics/x.sql": "-- " + "x" * MAX_BODY}}
NEW_FILES = {**demo_files(), "logics/extra.sql": "SELECT 1 AS one"}  # a new release
ZWJ, RTL, NUL = "\u200d", "\u202e", "\u0000"
URL = {"url": "sqlite:///x.db"}

CASES = [
    # /call body shape
    call("call-bad-json", b'{"path": "logics/public/stats",'),
    call("call-json-array", b"[1, 2]"),
    call("call-json-string", b'"logics/public/stats"'),
    call("call-json-null", b"null"),
    call("call-json-number", b"42"),
    call("call-empty-body", b""),
    call("call-invalid-utf8", b'{"path": "logics/public/stats", "params": {"\xff\xfe": 1}}'),
    call("call-invalid-utf8-in-path", b'{"path": "logics/public/st\xc3\x28ts"}'),
    call("call-utf16", '{"path": "logics/public/stats"}'.encode("utf-16")),
    call("call-lone-surrogate", b'{"path": "logics/public/stats\\ud800"}'),
    call("call-nesting-64-parses", {**STATS, "params": {"a": nest(62)}}, word="unknown param"),
    call("call-nesting-65", {**STATS, "params": {"a": nest(63)}}, word="nesting"),
    call("call-nesting-72", {**STATS, "params": {"a": {"b": nest(70)}}}, word="nesting"),
    call("call-nesting-3000", deep(b'{"path": "x", "params": {"a": ', 3000), word="json"),
    call("call-oversized", BIG, 413, TOO_LARGE, word="too large"),
    call("call-oversized-chunked", BIG, 413, TOO_LARGE, chunked=True, word="too large"),
    call("call-unknown-top-level-key", {**STATS, "extra": 1}, word="unknown field"),
    call("call-key-wrong-case", {"Path": "logics/public/stats"}),
    call("call-missing-path", {"params": {}}),
    call("call-path-number", {"path": 5}),
    call("call-path-null", {"path": None}),
    call("call-path-list", {"path": ["logics", "public", "stats"]}),
    call("call-params-list", {**STATS, "params": [1]}),
    call("call-params-string", {**STATS, "params": "x"}),
    # /call path grammar
    path("path-empty", "", 404, NOT_FOUND),
    path("path-unknown-prefix", "files/a/b", 404, NOT_FOUND),
    path("path-prefix-case", "DB/notes/select", 404, NOT_FOUND),
    path("path-leading-dotdot", "../logics/public/stats", 404, NOT_FOUND),
    path("path-leading-slash", "/logics/public/stats", 404, NOT_FOUND),
    path("path-empty-segment", "logics//stats"),
    path("path-trailing-slash", "logics/public/stats/"),
    path("path-logics-alone", "logics"),
    path("path-logics-slash", "logics/"),
    path("path-dotdot", "logics/public/../admin/activity"),
    path("path-encoded-dotdot", "logics/%2e%2e/admin/activity"),
    path("path-space", "logics/public stats"),
    path("path-dot", "logics/public/stats.sql"),
    path("path-fullwidth", f"logics/{fullwidth('public')}/stats"),
    path("path-zero-width-joiner", f"logics/public{ZWJ}/stats"),
    path("path-rtl-override", f"logics/{RTL}public/stats"),
    path("path-nul", f"logics/public/stats{NUL}"),
    path("path-newline", "logics/public/stats\n"),
    path("path-db-too-short", "db/notes"),
    path("path-db-too-long", "db/notes/select/x"),
    path("path-db-unknown-op", "db/notes/drop"),
    path("path-db-op-case", "db/notes/SELECT"),
    path("path-db-empty-table", "db//select"),
    path("path-storage-too-short", "storage/bucket"),
    path("path-unknown-logic", "logics/nope", 404, NOT_FOUND),
    # /call logic params
    call("param-undeclared", {**STATS, "params": {"x": 1}}, word="unknown param"),
    logic("param-int-as-string", "admin/activity", {"limit": "ten"}),
    logic("param-int-as-bool", "admin/activity", {"limit": True}),
    logic("param-int-as-float", "admin/activity", {"limit": 1.5}),
    logic("param-extra", "admin/activity", {"limit": 10, "owner": "x"}),
    logic("param-missing-required", "notebooks/summary", {}),
    logic("param-string-as-int", "notebooks/summary", {"owner_id": 5}),
    logic("param-string-as-list", "notebooks/summary", {"owner_id": ["a"]}),
    logic("param-operator-object", "notebooks/summary", {"owner_id": {"$ne": 1}}),
    logic("param-update-missing-required", "notes/pin", {"pinned": False}),
    logic("param-bool-as-string", "notes/pin", {"note_id": "n", "pinned": "yes"}),
    # /call headers with unicode oddities (raw UTF-8 bytes in the header value)
    call(
        "hdr-project-fullwidth", STATS, headers={"X-Santokit-Project": fullwidth("acme").encode()}
    ),
    call("hdr-project-zwj", STATS, headers={"X-Santokit-Project": f"ac{ZWJ}me".encode()}),
    call("hdr-project-nul", STATS, headers={"X-Santokit-Project": b"acme\x00"}),
    call("hdr-env-rtl", STATS, headers={"Host": HOST, "X-Santokit-Env": f"{RTL}prod".encode()}),
    call(
        "hdr-key-fullwidth", STATS, 401, UNAUTH, {"X-Santokit-Api-Key": fullwidth("stk_").encode()}
    ),
    # /call: method and route
    row("call-get", "GET", "/call", 405, METHOD, None, admin_auth=False),
    row("call-put", "PUT", "/call", 405, METHOD, STATS, admin_auth=False),
    row("route-unknown", "POST", "/calls", 404, NOT_FOUND, STATS, admin_auth=False),
    row("route-call-subpath", "POST", "/call/logics/x", 404, NOT_FOUND, None, admin_auth=False),
    row("healthz-post", "POST", "/healthz", 405, METHOD, None, admin_auth=False),
    # /auth/* and the JWKS (plain ASGI, `docs/api.md`): bodies, methods
    auth("auth-login-bad-json", b'{"email": "a@example.com"', word="invalid request body"),
    auth("auth-login-array", [], word="invalid request body"),
    auth("auth-login-empty", b"", word="invalid request body"),
    auth("auth-login-missing-password", {"email": "a@example.com"}),
    auth("auth-login-number", {"email": 5, "password": "correct-horse"}),
    auth("auth-login-unknown-field", {"email": "a@b.c", "password": "p4ssword!", "x": 1}),
    auth("auth-login-oversized", {"email": "a" * 3_000_000}, 413, TOO_LARGE),
    auth("auth-signup-null", {"email": None, "password": "correct-horse"}, path="/auth/signup"),
    auth("auth-refresh-missing", {}, path="/auth/refresh"),
    row(
        "auth-login-get",
        "GET",
        "/auth/login",
        405,
        METHOD,
        None,
        headers={"Host": HOST},
        admin_auth=False,
    ),
    row(
        "auth-me-post",
        "POST",
        "/auth/me",
        405,
        METHOD,
        {},
        headers={"Host": HOST},
        admin_auth=False,
    ),
    row(
        "jwks-post",
        "POST",
        "/.well-known/jwks.json",
        405,
        METHOD,
        {},
        headers={"Host": HOST},
        admin_auth=False,
    ),
    row(
        "auth-unknown-route",
        "POST",
        "/auth/nothing",
        404,
        NOT_FOUND,
        {},
        headers={"Host": HOST},
        admin_auth=False,
    ),
    # admin: body shape
    create("admin-bad-json", b'{"id": "newproj"'),
    create("admin-json-array", b'["newproj"]'),
    create("admin-invalid-utf8", b'{"id": "new\xffproj"}'),
    create("admin-empty-body", b""),
    create("admin-nesting-70", {"id": "newproj", "hosts": nest(70)}),
    patch("admin-nesting-70-any", {"limits": {"maxPoolSize": nest(70)}}),
    create("admin-nesting-3000", deep(b'{"id": "newproj", "hosts": ', 3000)[:-1]),
    create("admin-oversized", BIG_PROJECT, 413, TOO_LARGE),
    create("admin-oversized-chunked", BIG_PROJECT, 413, TOO_LARGE, chunked=True),
    on_env("publish-oversized", "POST", "/releases", BIG_RELEASE, 413, TOO_LARGE),
    # admin: strict types and unknown fields
    create("admin-envs-string", {"id": "newproj", "envs": "prod"}),
    create("admin-id-number", {"id": 5}),
    create("admin-id-null", {"id": None}),
    create("admin-id-missing", {}),
    create("admin-unknown-field", {"id": "newproj", "color": "red"}),
    create("admin-env-number", {"id": "newproj", "envs": [5]}),
    create("admin-hosts-string", {"id": "newproj", "hosts": "a.example.com"}),
    patch("patch-status-unknown", {"status": "paused"}),
    patch("patch-status-null", {"status": None}),
    patch("patch-status-number", {"status": 1}),
    patch("patch-limit-string", {"limits": {"maxPoolSize": "5"}}),
    patch("patch-limit-bool", {"limits": {"maxPoolSize": True}}),
    patch("patch-limit-zero", {"limits": {"maxPoolSize": 0}}),
    patch("patch-limit-unknown", {"limits": {"evil": 1}}),
    patch("patch-default-env-unknown", {"defaultEnv": "qa"}),
    patch("patch-unknown-field", {"color": "red"}),
    patch("patch-list", []),
    on_env("apikey-name-number", "POST", "/api-keys", {"name": 5}),
    on_env("apikey-roles-string", "POST", "/api-keys", {"name": "k", "roles": "admin"}),
    on_env("apikey-role-number", "POST", "/api-keys", {"name": "k", "roles": [5]}),
    on_env("apikey-role-space", "POST", "/api-keys", {"name": "k", "roles": ["ad min"]}),
    on_env(
        "apikey-role-fullwidth", "POST", "/api-keys", {"name": "k", "roles": [fullwidth("admin")]}
    ),
    on_env("apikey-name-empty", "POST", "/api-keys", {"name": ""}),
    on_env("apikey-name-long", "POST", "/api-keys", {"name": "k" * 129}),
    on_env("apikey-name-nul", "POST", "/api-keys", {"name": f"ci{NUL}"}),
    on_env("apikey-name-rtl", "POST", "/api-keys", {"name": f"{RTL}ic"}),
    on_env("apikey-unknown-field", "POST", "/api-keys", {"name": "k", "env": "dev"}),
    on_env("secret-value-number", "PUT", "/secrets/NAME", {"value": 5}),
    on_env("secret-unknown-field", "PUT", "/secrets/NAME", {"value": "v", "name": "X"}),
    on_env("connection-url-number", "PUT", "/connections/main", {"url": 5}),
    on_env("connection-url-scheme", "PUT", "/connections/main", {"url": "ftp://x/y"}),
    on_env(
        "connection-unreachable",
        "PUT",
        "/connections/other",
        {"url": "postgresql://u:pw@127.0.0.1:1/x"},
    ),
    on_env("connection-unknown-field", "PUT", "/connections/main", {**URL, "x": 1}),
    on_env("publish-files-string", "POST", "/releases", {"files": "x"}),
    on_env("publish-file-number", "POST", "/releases", {"files": {"logics/a.sql": 5}}),
    on_env("publish-files-missing", "POST", "/releases", {}),
    on_env("publish-dryrun-number", "POST", "/releases", {"files": {}, "dryRun": 1}),
    on_env("publish-apply-string", "POST", "/releases", {"files": {}, "applySchema": "yes"}),
    on_env("publish-ref-number", "POST", "/releases", {"files": {}, "ref": 5}),
    on_env("publish-ref-nul", "POST", "/releases", {"files": NEW_FILES, "ref": f"v2{NUL}"}),
    on_env("publish-ref-long", "POST", "/releases", {"files": NEW_FILES, "ref": "v" * 201}),
    on_env("rollback-release-number", "POST", "/releases/rollback", {"release": 5}),
    admin_case(
        "promote-field-name",
        "POST",
        f"{PROJECTS}/acme/promote",
        400,
        BAD,
        {"source": "prod", "to": "dev"},
    ),
    admin_case(
        "promote-to-missing", "POST", f"{PROJECTS}/acme/promote", 400, BAD, {"from": "prod"}
    ),
    # admin: invalid ids, path traversal, unicode oddities
    create("id-upper-underscore", {"id": "New_Project"}),
    create("id-too-short", {"id": "ab"}),
    create("id-trailing-hyphen", {"id": "newproj-"}),
    create("id-traversal", {"id": "../etc"}),
    create("id-encoded-traversal", {"id": "%2e%2e"}),
    create("id-fullwidth", {"id": fullwidth("newproj")}),
    create("id-zwj", {"id": f"new{ZWJ}proj"}),
    create("id-rtl", {"id": f"{RTL}newproj"}),
    create("id-nul", {"id": f"newproj{NUL}"}),
    create("id-newline", {"id": "newproj\n"}),
    create("env-upper", {"id": "newproj", "envs": ["PROD"]}),
    create("env-duplicate", {"id": "newproj", "envs": ["prod", "prod"]}),
    create("env-nul", {"id": "newproj", "envs": [f"pr{NUL}od"]}),
    create("default-env-not-listed", {"id": "newproj", "defaultEnv": "qa"}),
    create("host-space", {"id": "newproj", "hosts": ["bad host"]}),
    create("host-zwj", {"id": "newproj", "hosts": [f"ex{ZWJ}ample.com"]}),
    create("host-fullwidth", {"id": "newproj", "hosts": [f"{fullwidth('example')}.com"]}),
    create("host-traversal", {"id": "newproj", "hosts": ["../etc"]}),
    admin_case("new-env-upper", "POST", f"{PROJECTS}/acme/envs", 400, BAD, {"id": "Dev"}),
    admin_case("new-env-traversal", "POST", f"{PROJECTS}/acme/envs", 400, BAD, {"id": "../x"}),
    on_env("alias-encoded-dotdot", "PUT", "/connections/%2e%2e", URL),
    on_env("alias-encoded-traversal", "PUT", "/connections/..%2F..%2Fetc", URL, 404, NOT_FOUND),
    on_env("alias-upper", "PUT", "/connections/Main", URL),
    on_env("alias-zwj", "PUT", "/connections/ma%E2%80%8Din", URL),
    on_env("alias-nul", "PUT", "/connections/main%00", URL),
    on_env("secret-name-slash", "PUT", "/secrets/a%2Fb", {"value": "v"}, 404, NOT_FOUND),
    on_env("secret-name-dotdot", "PUT", "/secrets/%2e%2e", {"value": "v"}),
    on_env("secret-name-fullwidth", "PUT", "/secrets/%EF%BC%A1PI", {"value": "v"}),
    on_env("secret-name-rtl", "PUT", "/secrets/A%E2%80%AEB", {"value": "v"}),
    on_env("secret-name-nul", "PUT", "/secrets/A%00B", {"value": "v"}),
    on_env("secret-delete-nul", "DELETE", "/secrets/A%00B", None, 404, NOT_FOUND),
    on_env("secret-delete-dotdot", "DELETE", "/secrets/%2e%2e", None, 404, NOT_FOUND),
    on_env("connection-delete-nul", "DELETE", "/connections/main%00", None, 404, NOT_FOUND),
    on_env("apikey-revoke-nul", "DELETE", "/api-keys/%00", None, 404, NOT_FOUND),
    on_env("apikey-revoke-dotdot", "DELETE", "/api-keys/%2e%2e", None, 404, NOT_FOUND),
    on_env("publish-file-traversal", "POST", "/releases", {"files": {"../../etc/passwd": "x"}}),
    on_env(
        "publish-logic-traversal",
        "POST",
        "/releases",
        {"files": {"logics/../../x.sql": "SELECT 1"}},
    ),
    on_env("publish-absolute-path", "POST", "/releases", {"files": {"/etc/x.sql": "SELECT 1"}}),
    on_env("publish-file-nul", "POST", "/releases", {"files": {f"logics/x{NUL}.sql": "SELECT 1"}}),
    on_env(
        "rollback-traversal", "POST", "/releases/rollback", {"release": "../../x"}, 404, NOT_FOUND
    ),
    on_env("rollback-nul", "POST", "/releases/rollback", {"release": f"a{NUL}"}, 404, NOT_FOUND),
    admin_case(
        "promote-bad-env",
        "POST",
        f"{PROJECTS}/acme/promote",
        404,
        NOT_FOUND,
        {"from": "prod", "to": "Dev!"},
    ),
    admin_case("get-project-dotdot", "GET", f"{PROJECTS}/%2e%2e", 404, NOT_FOUND),
    admin_case("get-project-fullwidth", "GET", f"{PROJECTS}/%EF%BD%81cme", 404, NOT_FOUND),
    admin_case("get-project-nul", "GET", f"{PROJECTS}/acme%00", 404, NOT_FOUND),
    admin_case("delete-project-unknown", "DELETE", f"{PROJECTS}/nope", 404, NOT_FOUND),
    admin_case("env-path-nul", "GET", f"{PROJECTS}/acme/envs/pr%00od/secrets", 404, NOT_FOUND),
    # admin: conflicts leave nothing behind
    create("project-exists", {"id": "acme"}, 409, CONFLICT),
    create("host-taken", {"id": "newproj", "hosts": ["API.acme.test"]}, 409, CONFLICT),
    admin_case("env-exists", "POST", f"{PROJECTS}/acme/envs", 409, CONFLICT, {"id": "dev"}),
    admin_case("env-delete-default", "DELETE", f"{PROJECTS}/acme/envs/prod", 409, CONFLICT),
    # admin: query strings
    admin_case("query-limit-zero", "GET", f"{PROJECTS}?limit=0", 400),
    admin_case("query-limit-high", "GET", f"{PROJECTS}?limit=501", 400),
    admin_case("query-limit-text", "GET", f"{PROJECTS}?limit=abc", 400),
    admin_case("query-projects-cursor-nul", "GET", f"{PROJECTS}?cursor=acme%00", 400),
    on_env("query-cursor-text", "GET", "/secrets?cursor=abc"),
    admin_case("audit-since-text", "GET", "/admin/v1/audit?since=yesterday", 400),
    admin_case("audit-since-naive", "GET", "/admin/v1/audit?since=2024-01-01T00:00:00", 400),
    admin_case("audit-cursor-garbage", "GET", "/admin/v1/audit?cursor=%00%ff", 400),
    admin_case("audit-project-nul", "GET", "/admin/v1/audit?project=acme%00", 400),
    admin_case("audit-action-nul", "GET", "/admin/v1/audit?action=project.create%00", 400),
    # admin auth
    no_auth("auth-missing", "GET", PROJECTS),
    no_auth("auth-wrong", "GET", PROJECTS, {"Authorization": f"Bearer {ADMIN_TOKEN[::-1]}"}),
    no_auth("auth-longer", "GET", PROJECTS, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}),
    no_auth("auth-prefix", "GET", PROJECTS, {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}),
    no_auth("auth-empty", "GET", PROJECTS, {"Authorization": "Bearer "}),
    no_auth("auth-basic", "GET", PROJECTS, {"Authorization": f"Basic {ADMIN_TOKEN}"}),
    no_auth("auth-zwj", "GET", PROJECTS, {"Authorization": f"Bearer {ADMIN_TOKEN}{ZWJ}".encode()}),
    no_auth("auth-api-key", "GET", PROJECTS, {"X-Santokit-Api-Key": KEY}),
    no_auth("auth-missing-delete", "DELETE", f"{PROJECTS}/acme"),
    no_auth("auth-missing-create", "POST", PROJECTS, body={"id": "newproj"}),
    no_auth("auth-before-body", "POST", PROJECTS, body=b"{bad"),
    no_auth("auth-before-body-shape", "POST", PROJECTS, body={"id": 5, "x": 1}),
    no_auth("auth-missing-secret", "PUT", f"{P}/secrets/NAME", body={"value": "v"}),
    no_auth("auth-missing-rewrap", "POST", "/admin/v1/keys/rewrap"),
    # admin: wrong method, unknown routes
    admin_case("method-put-projects", "PUT", PROJECTS, 405, METHOD, {"id": "newproj"}),
    admin_case("method-delete-audit", "DELETE", "/admin/v1/audit", 405, METHOD),
    admin_case("method-patch-audit", "PATCH", "/admin/v1/audit", 405, METHOD, {}),
    admin_case("method-get-rewrap", "GET", "/admin/v1/keys/rewrap", 405, METHOD),
    on_env("method-get-secret-value", "GET", "/secrets/API_TOKEN", None, 405, METHOD),
    admin_case("route-admin-unknown", "GET", "/admin/v1/nope", 404, NOT_FOUND),
    admin_case("route-admin-v2", "GET", "/admin/v2/projects", 404, NOT_FOUND),
    on_env("route-admin-env-unknown", "GET", "/nope", None, 404, NOT_FOUND),
    admin_case("route-admin-root", "GET", "/admin", 404, NOT_FOUND),
]


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


async def send(world: Acme, case: Case) -> httpx.Response:
    headers = {k: (world.key if v == KEY else v) for k, v in case.headers.items()}
    if case.admin_auth:
        headers.update(world.bridge.admin_headers)
    content = case.content
    if case.json is not None:
        content = httpx.Request("POST", "/", json=case.json).content
    if case.json is not None or content is not None:
        headers.setdefault("Content-Type", "application/json")
    body: Any = chunks(content or b"") if case.chunked else content
    return await world.bridge.client.request(case.method, case.url, content=body, headers=headers)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES)
async def test_bad_input(world: Acme, case: Case) -> None:
    r = await send(world, case)
    assert r.status_code != 500, r.text
    assert (r.status_code, r.json()["error"]["code"]) == (case.status, case.code), r.text
    assert r.json()["error"]["requestId"] == r.headers["x-request-id"]
    assert case.word in r.json()["error"]["message"].lower()
    assert await world.snapshot() == world.baseline


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
