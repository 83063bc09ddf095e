"""Tenant resolution (`docs/tenancy.md`), every branch through real HTTP: `POST /call` on published
tenants, each with its own SQLite database holding different rows.

Tenants: `acme` (envs prod + dev, custom host `api.acme.test`, default env prod) and `globex`
(env prod). The public logic `public/stats` counts rows, so its answer says which database
served the request. The shared world runs once per registry engine (SQLite, PostgreSQL).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from support.bridge import running_bridge
from support.services import registry_database
from support.world import World, demo_files, seeded_sqlite

pytestmark = pytest.mark.asyncio(loop_scope="module")

BARE = "api.example.com"  # the suffix itself: no project hint

# (notebooks, notes, categories) in each tenant database
ACME_PROD = (3, 4, 3)
ACME_DEV = (4, 4, 3)
GLOBEX = (2, 2, 3)

ACME_DEV_SQL = "INSERT INTO notebooks (id, owner_id, title) VALUES ('DEV1', 'dev-user', 'Dev');"
GLOBEX_SQL = """
DELETE FROM notes WHERE owner_id = 'seed-alice';
DELETE FROM notebooks WHERE owner_id = 'seed-alice';
INSERT INTO notebooks (id, owner_id, title) VALUES ('G1', 'globex-owner', 'Plans');
INSERT INTO notes (id, notebook_id, owner_id, title) VALUES ('GN1', 'G1', 'globex-owner', 'Hush');
"""


async def stats(
    world: World, headers: dict[str, Any], path: str = "logics/public/stats", **params: Any
) -> httpx.Response:
    """`path` on a bare host unless `headers` name one; `world.keys` are labelled
    "acme/prod", "acme/dev", "globex/prod" (roles [admin])."""
    return await world.call(path, params, headers={"Host": BARE, **headers})


async def publish_tenant(world: World, project: str, env: str, db: str) -> None:
    await world.tenant(project, env, db, demo_files())
    await world.api_key(project, env, "ci", ["admin"], label=f"{project}/{env}")


@asynccontextmanager
async def tenants(
    data_dir: Path, registry_url: str | None = None, **overrides: Any
) -> AsyncIterator[World]:
    async with running_bridge(data_dir, registry_url, **overrides) as bridge:
        world = World(bridge)
        await world.project("acme", envs=["prod", "dev"], hosts=["api.acme.test"])
        await world.project("globex")
        await publish_tenant(world, "acme", "prod", seeded_sqlite(data_dir / "acme-prod.db"))
        dev = seeded_sqlite(data_dir / "acme-dev.db", ACME_DEV_SQL)
        await publish_tenant(world, "acme", "dev", dev)
        await publish_tenant(
            world, "globex", "prod", seeded_sqlite(data_dir / "globex.db", GLOBEX_SQL)
        )
        yield world


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """Shared by the read-only tests, on both registry engines."""
    data_dir = tmp_path_factory.mktemp(f"resolution-{request.param}")
    async with registry_database(request.param) as url, tenants(data_dir, url) as w:
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trusting(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """A Bridge behind a trusted proxy (`STK_TRUST_FORWARDED_HOST=true`)."""
    async with tenants(tmp_path_factory.mktemp("trusting"), trust_forwarded_host=True) as w:
        yield w


def error_of(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code
    assert error["requestId"] == r.headers["x-request-id"]
    return error


def stats_of(r: httpx.Response) -> tuple[int, int, int]:
    assert r.status_code == 200, r.text
    row = r.json()["data"][0]
    return row["notebooks"], row["notes"], row["categories"]


def expect(r: httpx.Response, outcome: tuple[int, int, int] | tuple[int, str, str]) -> None:
    """`outcome` is a tenant's row counts, or (status, code, word expected in the message)."""
    if isinstance(outcome[1], str):
        status, code, word = outcome
        assert isinstance(status, int) and isinstance(word, str)
        assert word in error_of(r, status, code)["message"].lower()
    else:
        assert stats_of(r) == outcome


NO_HINT = (400, "BAD_REQUEST", "could not be resolved")
INVALID_ID = (400, "BAD_REQUEST", "invalid project id")
CONFLICT = (400, "BAD_REQUEST", "conflicting")
INVALID_ENV = (400, "BAD_REQUEST", "invalid env")
NOT_FOUND = (404, "NOT_FOUND", "not found")
DENIED = (403, "FORBIDDEN", "not valid for this project")
BAD_KEY = (401, "UNAUTHORIZED", "invalid api key")
BAD_TOKEN = (401, "UNAUTHORIZED", "invalid token")


# --- Host hint: suffix and custom hosts ---------------------------------------------------


@pytest.mark.parametrize(
    ("host", "outcome"),
    [
        ("acme.api.example.com", ACME_PROD),
        ("acme.api.example.com:8443", ACME_PROD),  # port ignored
        ("ACME.Api.Example.COM", ACME_PROD),  # case-insensitive
        ("AcMe.API.EXAMPLE.COM:80", ACME_PROD),
        ("acme.api.example.com.", ACME_PROD),  # fully qualified (trailing dot)
        ("globex.api.example.com", GLOBEX),
        ("x.acme.api.example.com", NO_HINT),  # two labels before the suffix: no hint
        ("api.example.com", NO_HINT),
        ("example.com", NO_HINT),
        ("acme.api.example.com.evil.test", NO_HINT),
        ("acmeapi.example.com", NO_HINT),
        ("[::1]:8000", NO_HINT),
        ("10.0.0.7:8000", NO_HINT),
        ("nope.api.example.com", NOT_FOUND),
        ("a.api.example.com", INVALID_ID),  # too short for a project id
        ("acme_1.api.example.com", INVALID_ID),
        ("-acme.api.example.com", INVALID_ID),
        # custom hosts (`hosts` on project create): exact names, port and case ignored
        ("api.acme.test", ACME_PROD),
        ("API.Acme.Test:8080", ACME_PROD),
        ("www.api.acme.test", NO_HINT),
        ("acme.test", NO_HINT),
    ],
)
async def test_host_hint(world: World, host: str, outcome: Any) -> None:
    expect(await stats(world, {"Host": host}), outcome)


@pytest.mark.parametrize(
    ("host", "outcome"),
    [
        ("\uff41\uff43\uff4d\uff45.api.example.com".encode(), INVALID_ID),  # fullwidth "acme"
        ("ac\u200dme.api.example.com".encode(), INVALID_ID),  # zero-width joiner
        ("\u202eemca.api.example.com".encode(), INVALID_ID),  # right-to-left override
        (b"acme\x00.api.example.com", INVALID_ID),
        # not host names: no hint, and no registry lookup (PostgreSQL refuses NUL: was a 503)
        (b"api.acme.test\x00", NO_HINT),
        ("api.\uff41cme.test".encode(), NO_HINT),
        (b"api.acme.test\xff", NO_HINT),
    ],
)
async def test_host_oddities(world: World, host: bytes, outcome: Any) -> None:
    """Raw bytes in Host (servers hand them over as latin-1)."""
    expect(await stats(world, {"Host": host}), outcome)


async def test_custom_host_conflicting_with_header_hint(world: World) -> None:
    r = await stats(world, {"Host": "api.acme.test", "X-Santokit-Project": "globex"})
    expect(r, CONFLICT)
    expect(await stats(world, {"Host": "api.acme.test", "X-Santokit-Project": "acme"}), ACME_PROD)


# --- X-Forwarded-Host: only behind a trusted proxy ----------------------------------------


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({"X-Forwarded-Host": "acme.api.example.com"}, NO_HINT),
        ({"Host": "globex.api.example.com", "X-Forwarded-Host": "acme.api.example.com"}, GLOBEX),
        ({"Host": "globex.api.example.com", "X-Forwarded-Host": "api.acme.test"}, GLOBEX),
    ],
)
async def test_forwarded_host_ignored_by_default(
    world: World, headers: dict[str, str], outcome: Any
) -> None:
    expect(await stats(world, headers), outcome)


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({"X-Forwarded-Host": "acme.api.example.com"}, ACME_PROD),
        ({"X-Forwarded-Host": "ACME.api.example.com:443"}, ACME_PROD),
        ({"Host": "globex.api.example.com", "X-Forwarded-Host": "acme.api.example.com"}, ACME_PROD),
        ({"Host": "globex.api.example.com", "X-Forwarded-Host": "api.acme.test"}, ACME_PROD),
        ({"Host": "acme.api.example.com", "X-Forwarded-Host": "api.example.com"}, NO_HINT),
        ({"Host": "globex.api.example.com"}, GLOBEX),  # no forwarded header: Host as usual
        ({"X-Forwarded-Host": "acme.api.example.com", "X-Santokit-Project": "globex"}, CONFLICT),
    ],
)
async def test_forwarded_host_honoured_when_trusted(
    trusting: World, headers: dict[str, str], outcome: Any
) -> None:
    expect(await stats(trusting, headers), outcome)


# --- header hint, env header, conflicts ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({"X-Santokit-Project": "acme"}, ACME_PROD),  # default env when no env header
        ({"X-Santokit-Project": "acme", "X-Santokit-Env": "prod"}, ACME_PROD),
        ({"X-Santokit-Project": "acme", "X-Santokit-Env": "dev"}, ACME_DEV),
        ({"Host": "acme.api.example.com", "X-Santokit-Env": "dev"}, ACME_DEV),
        ({"X-Santokit-Project": "globex"}, GLOBEX),
        ({"Host": "acme.api.example.com", "X-Santokit-Project": "acme"}, ACME_PROD),
        ({"Host": "acme.api.example.com", "X-Santokit-Project": "globex"}, CONFLICT),
        ({"Host": "globex.api.example.com", "X-Santokit-Project": "acme"}, CONFLICT),
        ({"X-Santokit-Project": "Acme"}, INVALID_ID),
        ({"X-Santokit-Project": "acme_corp"}, INVALID_ID),
        ({"X-Santokit-Project": "ab"}, INVALID_ID),
        ({"X-Santokit-Project": ""}, INVALID_ID),
        ({"X-Santokit-Project": "acme.api.example.com"}, INVALID_ID),
        ({"X-Santokit-Project": "acme", "X-Santokit-Env": "PROD"}, INVALID_ENV),
        ({"X-Santokit-Project": "acme", "X-Santokit-Env": "dev_1"}, INVALID_ENV),
        ({"X-Santokit-Project": "acme", "X-Santokit-Env": ""}, INVALID_ENV),
        ({"X-Santokit-Env": "prod"}, NO_HINT),
        ({}, NO_HINT),
    ],
)
async def test_header_hint(world: World, headers: dict[str, str], outcome: Any) -> None:
    expect(await stats(world, headers), outcome)


async def test_conflict_is_decided_before_credentials(world: World) -> None:
    key = world.keys["acme/prod"]
    r = await stats(
        world,
        {"Host": "acme.api.example.com", "X-Santokit-Project": "globex", "X-Santokit-Api-Key": key},
    )
    expect(r, CONFLICT)


# --- API keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "headers", "outcome"),
    [
        ("acme/prod", {}, ACME_PROD),  # the key alone resolves its tenant
        ("acme/prod", {"Host": "acme.api.example.com"}, ACME_PROD),
        ("acme/prod", {"Host": "api.acme.test", "X-Santokit-Env": "prod"}, ACME_PROD),
        ("acme/prod", {"X-Santokit-Project": "acme"}, ACME_PROD),
        ("acme/dev", {}, ACME_DEV),  # the key's env, not the project's default
        ("acme/dev", {"X-Santokit-Project": "acme", "X-Santokit-Env": "dev"}, ACME_DEV),
        ("globex/prod", {}, GLOBEX),
        ("acme/prod", {"Host": "globex.api.example.com"}, DENIED),
        ("acme/prod", {"X-Santokit-Project": "globex"}, DENIED),
        ("globex/prod", {"Host": "acme.api.example.com"}, DENIED),
        ("globex/prod", {"Host": "api.acme.test"}, DENIED),
        ("acme/prod", {"X-Santokit-Env": "dev"}, DENIED),
        ("acme/dev", {"X-Santokit-Env": "prod"}, DENIED),
        ("acme/prod", {"X-Santokit-Project": "nope"}, DENIED),
        ("acme/prod", {"X-Santokit-Env": "staging"}, DENIED),
    ],
)
async def test_api_key(world: World, key: str, headers: dict[str, str], outcome: Any) -> None:
    expect(await stats(world, {**headers, "X-Santokit-Api-Key": world.keys[key]}), outcome)


def tampered(key: str) -> str:
    """The same keyId with another well-formed secret."""
    head, _, secret = key.partition(".")
    return f"{head}.{('A' if secret[0] != 'A' else 'B')}{secret[1:]}"


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda k: "stk_0123456789abcdef." + "A" * 43, id="unknown"),
        pytest.param(tampered, id="wrong-secret"),
        pytest.param(lambda k: k[:-1], id="short-secret"),
        pytest.param(lambda k: k + "A", id="long-secret"),
        pytest.param(lambda k: k.split(".")[0], id="no-secret"),
        pytest.param(lambda k: k.upper(), id="upper-case"),
        pytest.param(lambda k: "stk_abc", id="truncated"),
        pytest.param(lambda k: "not-a-key", id="garbage"),
        pytest.param(lambda k: "", id="empty"),
        pytest.param(lambda k: f"Bearer {k}", id="with-scheme"),
        pytest.param(lambda k: k.replace("stk_", "sk_"), id="wrong-prefix"),
    ],
)
async def test_invalid_api_key_is_401(world: World, make_key: Any) -> None:
    for host in ("acme.api.example.com", BARE):
        key = make_key(world.keys["acme/prod"])
        expect(await stats(world, {"Host": host, "X-Santokit-Api-Key": key}), BAD_KEY)


async def test_a_cached_key_still_checks_every_secret(world: World) -> None:
    """The `apikey` cache keeps a key's hash and caller, loaded once; each request's secret is
    still compared with that hash (`tenancy.resolution.ActiveKey`)."""
    key = world.keys["acme/prod"]
    cache = world.bridge.rt.directory.api_keys
    expect(await stats(world, {"X-Santokit-Api-Key": key}), ACME_PROD)
    misses = cache.misses
    for _ in range(3):
        expect(await stats(world, {"X-Santokit-Api-Key": tampered(key)}), BAD_KEY)
        expect(await stats(world, {"X-Santokit-Api-Key": key}), ACME_PROD)
    assert cache.misses == misses


async def test_bearer_beside_an_api_key_is_ignored(world: World) -> None:
    forged = jwt.encode({"project_id": "globex", "env_id": "prod"}, "x" * 32, algorithm="HS256")
    for bearer in ("garbage", forged):
        r = await stats(
            world,
            {"X-Santokit-Api-Key": world.keys["acme/prod"], "Authorization": f"Bearer {bearer}"},
        )
        expect(r, ACME_PROD)


async def test_api_key_roles_reach_the_route(world: World) -> None:
    """The key's principal (roles [admin]) is what the logic's role gate sees."""
    r = await stats(world, {"Host": "acme.api.example.com"}, "logics/admin/activity")
    error_of(r, 401, "UNAUTHORIZED")
    r = await stats(world, {"X-Santokit-Api-Key": world.keys["acme/prod"]}, "logics/admin/activity")
    assert r.status_code == 200, r.text
    assert {row["owner_id"] for row in r.json()["data"]} == {"seed-alice", "seed-bob"}


# --- Bearer tokens -----------------------------------------------------------------------


def forged_tokens() -> list[Any]:
    now = int(time.time())
    claims = {"sub": "u1", "project_id": "acme", "env_id": "prod", "iat": now, "exp": now + 600}
    claims |= {"iss": "stk:acme:prod", "aud": "stk:acme:prod", "roles": ["authenticated"]}
    other = Ed25519PrivateKey.generate()
    return [
        pytest.param(jwt.encode(claims, None, algorithm="none"), id="alg-none"),
        pytest.param(jwt.encode(claims, "s" * 32, algorithm="HS256"), id="hs256"),
        pytest.param(
            jwt.encode(claims, other, algorithm="EdDSA", headers={"kid": "k1"}), id="eddsa-foreign"
        ),
        pytest.param(
            jwt.encode({**claims, "project_id": "nope"}, other, algorithm="EdDSA"),
            id="unknown-project",
        ),
        pytest.param("not.a.jwt", id="garbage"),
        pytest.param("", id="empty"),
    ]


@pytest.mark.parametrize("token", forged_tokens())
@pytest.mark.parametrize("host", ["acme.api.example.com", BARE])
async def test_unverifiable_bearer_is_401(world: World, token: str, host: str) -> None:
    r = await stats(world, {"Host": host, "Authorization": f"Bearer {token}"})
    expect(r, BAD_TOKEN)


async def test_bearer_answers_do_not_reveal_existence(world: World) -> None:
    token = jwt.encode({"project_id": "acme"}, "s" * 32, algorithm="HS256")
    bodies = set()
    for project in ("acme", "nope"):
        r = await stats(world, {"X-Santokit-Project": project, "Authorization": f"Bearer {token}"})
        expect(r, BAD_TOKEN)
        error = r.json()["error"]
        bodies.add((error["code"], error["message"]))
    assert len(bodies) == 1


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def user_tokens(world: World) -> dict[str, str]:
    """Access tokens of end users signed up on acme/prod and globex/prod (demo: signup open)."""
    tokens = {}
    for project in ("acme", "globex"):
        creds = {"email": f"user@{project}.test", "password": "correct horse battery"}
        headers = {"Host": f"{project}.api.example.com"}
        r = await world.bridge.client.post("/auth/signup", json=creds, headers=headers)
        assert r.status_code == 201, r.text
        r = await world.bridge.client.post("/auth/login", json=creds, headers=headers)
        assert r.status_code == 200, r.text
        tokens[project] = r.json()["access_token"]
    head, payload, signature = tokens["acme"].split(".")
    tokens["acme-tampered"] = f"{head}.{payload}.{signature[::-1]}"
    return tokens


@pytest.mark.parametrize(
    ("token", "headers", "outcome"),
    [
        ("acme", {}, ACME_PROD),  # the claim chooses whose keys verify it
        ("acme", {"Host": "acme.api.example.com"}, ACME_PROD),
        ("acme", {"Host": "api.acme.test", "X-Santokit-Env": "prod"}, ACME_PROD),
        ("acme", {"X-Santokit-Project": "acme"}, ACME_PROD),
        ("globex", {}, GLOBEX),
        # a valid credential of another tenant: 403, like an API key
        ("acme", {"Host": "globex.api.example.com"}, DENIED),
        ("acme", {"X-Santokit-Project": "globex"}, DENIED),
        ("globex", {"Host": "api.acme.test"}, DENIED),
        ("acme", {"X-Santokit-Env": "dev"}, DENIED),
        ("acme", {"X-Santokit-Project": "nope"}, DENIED),
        ("acme-tampered", {}, BAD_TOKEN),
        ("acme-tampered", {"Host": "acme.api.example.com"}, BAD_TOKEN),
    ],
)
async def test_user_token(
    world: World, user_tokens: dict[str, str], token: str, headers: dict[str, str], outcome: Any
) -> None:
    r = await stats(world, {**headers, "Authorization": f"Bearer {user_tokens[token]}"})
    expect(r, outcome)


async def test_api_key_wins_over_a_valid_user_token(
    world: World, user_tokens: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {user_tokens['globex']}"}
    expect(
        await stats(world, {**headers, "X-Santokit-Api-Key": world.keys["acme/prod"]}), ACME_PROD
    )


# --- unknown, disabled, no env: one indistinguishable 404 ---------------------------------


def without_request_id(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert body["error"].pop("requestId") == r.headers["x-request-id"]
    return body


async def test_unknown_disabled_and_missing_env_answer_the_same_404(tmp_path: Path) -> None:
    async with tenants(tmp_path) as world:
        r = await world.admin("PATCH", "/projects/globex", json={"status": "disabled"})
        assert r.status_code == 200, r.text
        answers = [
            await stats(world, {"X-Santokit-Project": "nope"}),
            await stats(world, {"Host": "nope.api.example.com"}),
            await stats(world, {"X-Santokit-Project": "globex"}),  # disabled
            await stats(world, {"Host": "globex.api.example.com", "X-Santokit-Env": "prod"}),
            await stats(world, {"X-Santokit-Api-Key": world.keys["globex/prod"]}),  # disabled
            await stats(world, {"X-Santokit-Project": "acme", "X-Santokit-Env": "staging"}),
            await stats(world, {"Host": "api.acme.test", "X-Santokit-Env": "qa"}),
        ]
        for r in answers:
            expect(r, NOT_FOUND)
        bodies = [without_request_id(r) for r in answers]
        assert all(body == bodies[0] for body in bodies)
        assert len({r.headers["x-request-id"] for r in answers}) == len(answers)
        assert {r.headers["content-type"] for r in answers} == {"application/json"}

        r = await world.admin("PATCH", "/projects/globex", json={"status": "active"})
        assert r.status_code == 200, r.text
        expect(await stats(world, {"X-Santokit-Project": "globex"}), GLOBEX)


# --- revocation ---------------------------------------------------------------------------


async def test_revoked_key_is_refused_at_once(tmp_path: Path) -> None:
    async with tenants(tmp_path) as world:
        key = world.keys["acme/prod"]
        expect(await stats(world, {"X-Santokit-Api-Key": key}), ACME_PROD)  # now cached
        key_id = key.removeprefix("stk_").split(".")[0]
        r = await world.admin("DELETE", f"/projects/acme/envs/prod/api-keys/{key_id}")
        assert r.status_code == 204, r.text
        expect(await stats(world, {"X-Santokit-Api-Key": key}), BAD_KEY)
        expect(
            await stats(world, {"Host": "acme.api.example.com", "X-Santokit-Api-Key": key}), BAD_KEY
        )
        # the other keys of the project are untouched
        expect(await stats(world, {"X-Santokit-Api-Key": world.keys["acme/dev"]}), ACME_DEV)
        r = await world.admin("GET", "/projects/acme/envs/prod/api-keys")
        assert [k["status"] for k in r.json()["items"]] == ["revoked"]


# --- isolation ----------------------------------------------------------------------------


async def test_tenants_see_only_their_own_rows(world: World) -> None:
    expect(await stats(world, {"Host": "acme.api.example.com"}), ACME_PROD)
    expect(await stats(world, {"Host": "globex.api.example.com"}), GLOBEX)
    owners = {}
    for tenant in ("acme/prod", "acme/dev", "globex/prod"):
        r = await stats(world, {"X-Santokit-Api-Key": world.keys[tenant]}, "logics/admin/activity")
        assert r.status_code == 200, r.text
        owners[tenant] = {row["owner_id"] for row in r.json()["data"]}
    assert owners == {
        "acme/prod": {"seed-alice", "seed-bob"},
        "acme/dev": {"seed-alice", "seed-bob"},
        "globex/prod": {"seed-bob", "globex-owner"},
    }
    r = await stats(
        world,
        {"X-Santokit-Api-Key": world.keys["globex/prod"]},
        "logics/notebooks/summary",
        owner_id="seed-alice",
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []  # acme's rows are not reachable from globex


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "globex.api.example.com"},
        {"X-Santokit-Project": "globex"},
        {"Host": "globex.api.example.com", "X-Santokit-Project": "globex"},
        {"X-Santokit-Project": "globex", "X-Santokit-Env": "prod"},
    ],
)
async def test_acme_key_cannot_reach_globex(world: World, headers: dict[str, str]) -> None:
    r = await stats(
        world, {**headers, "X-Santokit-Api-Key": world.keys["acme/prod"]}, "logics/admin/activity"
    )
    expect(r, DENIED)
