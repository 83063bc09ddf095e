"""Isolation, generatively (issue 9 item 6): random tenants by credential kinds by hint
combinations by routes always answer a defined status and never another tenant's data; a fuzz
pass of `/call` params and of the release compiler never answers 5xx nor hangs.

Hypothesis drives a Bridge running on an event loop of its own thread (its examples are plain
functions); every request is bounded by `STEP_SECONDS`, the compiler by hypothesis' deadline.
Example counts are bounded so the module runs in seconds within `make test`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenancy.errors import PublishError
from tenancy.releases.compile.compiler import compile_release

from support.bridge import Bridge, running_bridge
from support.world import World

T = TypeVar("T")
STEP_SECONDS = 10
SUFFIX = "api.example.com"
TENANTS = [("alpha", "prod"), ("alpha", "dev"), ("beta", "prod")]
DEFINED = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 429}
FILES = {
    "schema/app.yaml": (
        "version: 1\ntables:\n  marks:\n    id: {name: id, generate: client, type: string}\n"
        "    columns:\n      tenant: {type: string, nullable: false}\n"
    ),
    "config/permissions.yaml": (
        "tables:\n  marks:\n    select: {roles: [public]}\n"
        "    insert: {roles: [admin], columns: [tenant]}\n"
    ),
    "config/auth.yaml": "signup: {enabled: true}\n",
    "logics/marker.sql": "---\nauth: public\n---\nSELECT tenant FROM marks\n",
    "logics/whoami.sql": "---\nauth: authenticated\n---\nSELECT :auth.sub AS sub\n",
    "logics/echo.sql": (
        "---\nauth: public\nparams:\n  n: {type: int, required: false}\n"
        "  s: {type: string, required: false}\n---\nSELECT :n AS n, :s AS s\n"
    ),
}


@dataclass
class Scenario:
    """The running Bridge (driven from another thread) and each tenant's credentials."""

    loop: asyncio.AbstractEventLoop
    bridge: Bridge
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    subs: dict[str, tuple[str, str]] = field(default_factory=dict)  # user/key id → tenant
    kids: dict[str, tuple[str, str]] = field(default_factory=dict)  # signing kid → its tenant

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the Bridge's loop; a hang fails the example."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(STEP_SECONDS)


async def _setup(scenario: Scenario) -> None:
    world = World(scenario.bridge)
    for project in ("alpha", "beta"):
        envs = [env for p, env in TENANTS if p == project]
        await world.project(project, envs=envs)
    for project, env in TENANTS:
        path = scenario.bridge.data_dir / f"{project}-{env}.db"
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE marks (id TEXT PRIMARY KEY, tenant TEXT NOT NULL)")
            db.execute("INSERT INTO marks VALUES ('m1', ?)", (f"{project}/{env}",))
        await world.tenant(project, env, f"sqlite:///{path}", FILES)
        scenario.keys[project, env] = await world.api_key(project, env, "k", ["admin"])
        scenario.subs[world.key_ids["k"]] = (project, env)  # an API key's `:auth.sub`
        headers = {"Host": f"{project}.{SUFFIX}", "X-Santokit-Env": env}
        body = {"email": f"u@{project}-{env}.example.com", "password": "password-1"}
        r = await world.client.post("/auth/signup", json=body, headers=headers)
        assert r.status_code == 201, r.text
        r = await world.client.post("/auth/login", json=body, headers=headers)
        login = r.json()
        scenario.tokens[project, env] = login["access_token"]
        scenario.subs[login["user"]["id"]] = (project, env)
        r = await world.client.get("/.well-known/jwks.json", headers=headers)
        for key in r.json()["keys"]:
            scenario.kids[key["kid"]] = (project, env)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    data_dir: Path = tmp_path_factory.mktemp("properties")
    context = running_bridge(data_dir)
    bridge = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(60)
    scenario = Scenario(loop, bridge)
    try:
        asyncio.run_coroutine_threadsafe(_setup(scenario), loop).result(120)
        yield scenario
    finally:
        asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# --- isolation ---------------------------------------------------------------------------------

tenants = st.sampled_from(TENANTS)
projects = st.sampled_from(["alpha", "beta", "nope"])
envs = st.sampled_from(["prod", "dev", "nope"])


@st.composite
def host_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Host, project and env hints in their spellings: case, trailing dot, bare suffix,
    forwarded host, duplicates."""
    headers: list[tuple[str, str]] = []
    project = draw(projects)
    host = draw(
        st.sampled_from(
            [
                f"{project}.{SUFFIX}",
                f"{project.upper()}.{SUFFIX.upper()}",
                f"{project}.{SUFFIX}.",
                f"{project}.{SUFFIX}:8080",
                SUFFIX,
                "unrelated.example.org",
            ]
        )
    )
    headers.append(("Host", host))
    for name, values in (
        ("X-Santokit-Project", projects),
        ("X-Santokit-Env", envs),
        ("X-Forwarded-Host", st.builds(lambda p: f"{p}.{SUFFIX}", projects)),
    ):
        for _ in range(draw(st.integers(0, 2))):  # absent, once, or duplicated
            headers.append((name, draw(values)))
    return headers


@st.composite
def credentials(draw: st.DrawFn, scenario: Scenario) -> tuple[list[tuple[str, str]], Any]:
    """(headers, the tenant the credential belongs to or None)."""
    kind = draw(st.sampled_from(["none", "key", "token", "forged", "garbage", "both"]))
    owner = draw(tenants)
    if kind == "none":
        return [], None
    if kind == "key":
        return [("X-Santokit-Api-Key", scenario.keys[owner])], owner
    token = scenario.tokens[owner]
    if kind == "token":
        return [("Authorization", f"Bearer {token}")], owner
    if kind == "forged":  # another tenant's signature on this tenant's claims
        other = scenario.tokens[draw(tenants)]
        forged = ".".join([*token.split(".")[:2], other.split(".")[2]])
        return [("Authorization", f"Bearer {forged}")], "forged" if forged != token else owner
    if kind == "garbage":
        return [
            ("Authorization", draw(st.sampled_from(["Bearer x.y.z", "Basic abc", "Bearer "])))
        ], None
    # A key beside a token: the key decides, the token is ignored (`docs/tenancy.md` step 3).
    second = draw(tenants)
    headers = [("X-Santokit-Api-Key", scenario.keys[owner])]
    return [*headers, ("Authorization", f"Bearer {scenario.tokens[second]}")], owner


ROUTES = [
    ("POST", "/call", {"path": "logics/marker"}),
    ("POST", "/call", {"path": "db/marks/select"}),
    ("POST", "/call", {"path": "logics/whoami"}),
    ("GET", "/auth/me", None),
    ("GET", "/.well-known/jwks.json", None),
]


def _owners(r: httpx.Response, route: str, body: Any, scenario: Scenario) -> set[tuple[str, str]]:
    """Every tenant whose data the answer shows."""
    data = r.json()
    if route == "/call" and body["path"] in ("logics/marker", "db/marks/select"):
        return {tuple(row["tenant"].split("/")) for row in data["data"]}  # type: ignore[misc]
    if route == "/call":
        return {scenario.subs[row["sub"]] for row in data["data"]}
    if route == "/auth/me":
        return {scenario.subs[data["id"]]}
    return {scenario.kids[key["kid"]] for key in data["keys"] if key["kid"] in scenario.kids}


def test_every_answer_is_defined_and_only_ever_the_callers_tenant(scenario: Scenario) -> None:
    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        hints=host_headers(),
        credential=credentials(scenario),
        route=st.sampled_from(ROUTES),
    )
    def check(
        hints: list[tuple[str, str]],
        credential: tuple[list[tuple[str, str]], Any],
        route: tuple[str, str, Any],
    ) -> None:
        extra, owner = credential
        method, path, body = route
        client = scenario.bridge.client
        request = client.request(method, path, json=body, headers=[*hints, *extra])
        r = scenario.run(request)
        assert r.status_code in DEFINED, (r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["error"]["code"], r.text
            return
        shown = _owners(r, path, body, scenario)
        if owner == "forged":
            raise AssertionError(f"forged credential admitted: {r.text}")
        if owner is not None:
            assert shown <= {owner}, (hints, extra, r.text)
        else:  # anonymous: only a tenant of a project the hints named
            named = " ".join(value.lower() for _, value in hints)
            assert all(project in named for project, _ in shown), (hints, r.text)

    check()


# --- fuzz: /call params --------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
param_keys = st.sampled_from(
    ["where", "orderBy", "limit", "offset", "select", "expand", "data", "values", "n", "s", "id"]
)


def test_call_params_never_answer_5xx(scenario: Scenario) -> None:
    @settings(max_examples=80, deadline=None, derandomize=True)
    @given(
        path=st.sampled_from(
            [
                "logics/echo",
                "logics/marker",
                "db/marks/select",
                "db/marks/insert",
                "db/marks/update",
                "db/marks/delete",
                "db/nope/select",
            ]
        ),
        params=st.dictionaries(param_keys | st.text(max_size=8), json_values, max_size=4)
        | json_values,
    )
    def check(path: str, params: Any) -> None:
        headers = {"Host": f"alpha.{SUFFIX}", "X-Santokit-Api-Key": scenario.keys["alpha", "prod"]}
        r = scenario.run(
            scenario.bridge.client.post(
                "/call", json={"path": path, "params": params}, headers=headers
            )
        )
        assert r.status_code < 500, (path, params, r.text)
        if r.status_code >= 400:
            assert r.json()["error"]["code"]

    check()


# --- fuzz: the release compiler ------------------------------------------------------------------

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "tables",
                    "columns",
                    "id",
                    "type",
                    "default",
                    "roles",
                    "select",
                    "insert",
                    "condition",
                    "auth",
                    "params",
                    "signup",
                    "requestsPerMinute",
                    "x",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=15,
)
SQL_WORDS = [
    "SELECT",
    "FROM",
    "WHERE",
    ":a",
    ":auth.sub",
    "'",
    "--",
    "/*",
    "*/",
    "$1",
    "?",
    "marks",
    ";",
    "1",
    "(",
    ")",
    '"',
    ":",
    "::",
    "=",
    "\n",
]
sql = st.lists(st.sampled_from(SQL_WORDS) | st.text(max_size=4), max_size=12).map(" ".join)
raw_text = st.text(max_size=80)


@settings(max_examples=100, deadline=2000, derandomize=True)
@given(
    schema=yaml_values.map(lambda v: yaml.safe_dump(v)) | raw_text,
    permissions=yaml_values.map(lambda v: yaml.safe_dump(v)) | raw_text,
    limits=st.none() | yaml_values.map(lambda v: yaml.safe_dump(v)),
    front=yaml_values.map(lambda v: yaml.safe_dump(v)) | raw_text,
    body=sql,
)
def test_the_compiler_answers_problems_or_a_release(
    schema: str, permissions: str, limits: str | None, front: str, body: str
) -> None:
    files = {
        "schema/app.yaml": schema,
        "config/permissions.yaml": permissions,
        "logics/fuzz.sql": f"---\n{front}\n---\n{body}\n",
    }
    if limits is not None:
        files["config/limits.yaml"] = limits
    try:
        compile_release(files, connections=["main"])
    except PublishError as exc:
        assert exc.details and all(d["message"] for d in exc.details)
