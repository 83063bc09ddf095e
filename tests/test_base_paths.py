"""Path-based base URLs (`docs/tenancy.md`): `/p/<project>[/<env>]/...` for `/call`, `/auth/*`,
`/openapi.json` and the JWKS, resolved like a header hint and in the same conflict rules; CORS
preflights located by it. Tenants of `support/auth.py` (alpha prod + dev, beta, gamma)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from bridge.state import split_base
from tenancy.resolution import BasePath

from support.auth import auth_world
from support.world import PASSWORD, World, bearer, host, new_email

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = "https://app.alpha.test"  # alpha prod's origin
DEV_APP = "http://localhost:5173"  # alpha dev's
WHOAMI = {"path": "logics/whoami"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with auth_world(tmp_path_factory.mktemp("paths")) as w:
        await w.api_key("alpha", "prod", "server", label="alpha")
        yield w


def error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    if message is not None:
        assert response.json()["error"]["message"] == message


@pytest.mark.parametrize(
    ("path", "base", "rest"),
    [
        ("/p/shop/call", BasePath("shop"), "/call"),
        ("/p/shop/prod/call", BasePath("shop", "prod"), "/call"),
        ("/p/shop/auth/login", BasePath("shop"), "/auth/login"),
        ("/p/shop/dev/auth/me", BasePath("shop", "dev"), "/auth/me"),
        ("/p/shop/openapi.json", BasePath("shop"), "/openapi.json"),
        ("/p/shop/dev/.well-known/jwks.json", BasePath("shop", "dev"), "/.well-known/jwks.json"),
        ("/p/shop/admin/v1/projects", None, "/p/shop/admin/v1/projects"),
        ("/p/shop/prod/healthz", None, "/p/shop/prod/healthz"),
        ("/p/shop", None, "/p/shop"),
        ("/p//call", None, "/p//call"),
        ("/call", None, "/call"),
    ],
)
async def test_split_base(path: str, base: BasePath | None, rest: str) -> None:
    assert split_base(path) == (base, rest)


async def test_call_and_auth_under_a_base_path(world: World) -> None:
    client = world.client
    email = new_email()
    credentials = {"email": email, "password": PASSWORD}
    assert (await client.post("/p/alpha/auth/signup", json=credentials)).status_code == 201
    login = await client.post("/p/alpha/prod/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    me = await client.get("/p/alpha/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["email"] == email
    r = await client.post("/p/alpha/call", json=WHOAMI, headers=auth)
    assert r.status_code == 200 and r.json()["data"][0]["sub"] == me.json()["id"]
    jwks = await client.get("/p/alpha/prod/.well-known/jwks.json")
    assert jwks.status_code == 200 and jwks.json()["keys"]
    # The path names the env: alpha dev has signup disabled and its own users.
    dev = await client.post("/p/alpha/dev/auth/signup", json={**credentials, "email": new_email()})
    assert dev.status_code == 403, dev.text
    key = await client.post(
        "/p/alpha/prod/call", json=WHOAMI, headers={"X-Santokit-Api-Key": world.keys["alpha"]}
    )
    assert key.status_code == 200


async def test_a_base_path_takes_part_in_the_conflict_rules(world: World) -> None:
    client = world.client
    post = client.post
    error(
        await post("/p/alpha/call", json=WHOAMI, headers=host("beta")),
        400,
        "Conflicting project hints",
    )
    named = {"X-Santokit-Project": "beta"}
    error(await post("/p/alpha/call", json=WHOAMI, headers=named), 400, "Conflicting project hints")
    agreeing = {**host("alpha"), "X-Santokit-Project": "alpha"}
    error(await post("/p/alpha/call", json=WHOAMI, headers=agreeing), 401)  # whoami needs a user
    env = {"X-Santokit-Env": "dev"}
    error(await post("/p/alpha/prod/call", json=WHOAMI, headers=env), 400, "Conflicting env hints")
    error(await post("/p/Not_A_Project/call", json=WHOAMI), 400, "Invalid project id in path")
    error(await post("/p/alpha/No.Env/call", json=WHOAMI), 400, "Invalid env id in path")
    error(await post("/p/nobody/call", json=WHOAMI), 404)
    error(await post("/p/alpha/staging/call", json=WHOAMI), 404)
    # Credentials of another tenant are refused as with any hint.
    key = {"X-Santokit-Api-Key": world.keys["alpha"]}
    error(await post("/p/beta/call", json=WHOAMI, headers=key), 403)
    error(await post("/p/alpha/dev/call", json=WHOAMI, headers=key), 403)
    token = (await world.session())["access_token"]
    error(await post("/p/beta/call", json=WHOAMI, headers=bearer(token)), 403)
    # Only the data plane lives under a base path.
    admin = world.bridge.admin_headers
    error(await client.get("/p/alpha/admin/v1/projects", headers=admin), 404)


async def test_preflights_are_located_by_the_base_path(world: World) -> None:
    """A browser app on a shared host reaches any tenant by its path."""

    async def preflight(path: str, origin: str) -> httpx.Response:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return await world.client.options(path, headers=headers)

    allowed = await preflight("/p/alpha/call", APP)
    assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == APP
    assert (await preflight("/p/alpha/call", DEV_APP)).status_code == 204  # any env of alpha
    assert (await preflight("/p/alpha/prod/auth/login", APP)).status_code == 204
    error(await preflight("/p/alpha/dev/call", APP), 403, "Origin not allowed")
    error(await preflight("/p/beta/call", APP), 403, "Origin not allowed")
    no_base = await preflight("/call", APP)  # nothing names a project
    error(no_base, 400, "Project could not be resolved")
    # The actual request is readable under the path too.
    r = await world.client.post("/p/alpha/call", json=WHOAMI, headers={"Origin": APP})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP


async def test_the_tenant_openapi_document_under_a_base_path(world: World) -> None:
    by_host = await world.client.get("/openapi.json", headers=host("alpha"))
    by_path = await world.client.get("/p/alpha/prod/openapi.json")
    assert by_path.status_code == 200, by_path.text
    assert by_path.json() == by_host.json()
    conflict = await world.client.get("/p/alpha/openapi.json", headers=host("beta"))
    error(conflict, 400, "Conflicting project hints")
