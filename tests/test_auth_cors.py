"""Per-project CORS (`docs/api.md`, `config/auth.yaml` `cors.origins`): preflights and response
headers
on `/call` and `/auth/*`. Tenants are described in `support/auth.py` (alpha prod allows
`https://app.alpha.test`, alpha dev `http://localhost:5173`, beta and gamma nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from support.auth import auth_world
from support.world import World, bearer, host

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = "https://app.alpha.test"
DEV_APP = "http://localhost:5173"
EVIL = "https://evil.test"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with auth_world(tmp_path_factory.mktemp("cors")) as w:
        yield w


async def preflight(
    world: World, origin: str, path: str = "/call", project: str = "alpha", **headers: str
) -> httpx.Response:
    return await world.client.options(
        path,
        headers={
            **host(project),
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
            **headers,
        },
    )


@pytest.mark.parametrize("path", ["/call", "/auth/login", "/auth/me", "/.well-known/jwks.json"])
async def test_preflight_from_an_allowed_origin(world: World, path: str) -> None:
    r = await preflight(world, APP, path)
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-santokit-env"} <= allowed
    assert r.headers["vary"] == "Origin"
    assert r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("origin", "project"),
    [
        (EVIL, "alpha"),
        ("https://app.alpha.test.evil.test", "alpha"),
        ("http://app.alpha.test", "alpha"),
        ("null", "alpha"),
        (APP, "beta"),
        (APP, "gamma"),
    ],
)
async def test_preflight_from_another_origin_is_refused(
    world: World, origin: str, project: str
) -> None:
    r = await preflight(world, origin, project=project)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "FORBIDDEN"
    assert "access-control-allow-origin" not in r.headers


async def test_preflight_allows_an_origin_of_any_env(world: World) -> None:
    """A preflight cannot say its env (no custom header values): every env of the project counts;
    naming one restricts it."""
    assert (await preflight(world, DEV_APP)).status_code == 204
    r = await preflight(world, DEV_APP, **{"X-Santokit-Env": "prod"})
    assert r.status_code == 403


async def test_preflight_for_an_unknown_project_is_the_usual_404(world: World) -> None:
    r = await preflight(world, APP, project="nope")
    assert r.status_code == 404 and "access-control-allow-origin" not in r.headers
    r = await world.client.options(
        "/call",
        headers={"Host": "api.example.com", "Origin": APP, "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


async def test_responses_carry_the_origin_only_when_allowed(world: World) -> None:
    body = {"path": "logics/whoami"}
    login = await world.session()
    headers = {**bearer(login["access_token"], "alpha"), "Origin": APP}
    r = await world.client.post("/call", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"x-request-id", "retry-after", "ratelimit-policy", "ratelimit"}
    assert r.headers["vary"] == "Origin"
    r = await world.client.post("/call", json=body, headers={**headers, "Origin": EVIL})
    assert r.status_code == 403 and r.json()["error"]["message"] == "Origin not allowed"
    assert "access-control-allow-origin" not in r.headers and r.headers["vary"] == "Origin"
    r = await world.client.get("/auth/me", headers=headers)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
    r = await world.client.post("/call", json=body, headers=bearer(login["access_token"], "alpha"))
    assert "access-control-allow-origin" not in r.headers and "vary" not in r.headers


async def test_an_env_answers_for_its_own_origins(world: World) -> None:
    """alpha prod's origin is refused by alpha dev (before the route is looked at)."""
    dev = {**host("alpha"), "X-Santokit-Env": "dev"}
    r = await world.client.post("/call", json={"path": "logics/x"}, headers={**dev, "Origin": APP})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = await world.client.post(
        "/call", json={"path": "logics/x"}, headers={**dev, "Origin": DEV_APP}
    )
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == DEV_APP


async def test_errors_before_resolution_still_let_the_app_read_them(world: World) -> None:
    """An expired or foreign token fails resolution; the browser must still see the 401."""
    r = await world.client.get(
        "/auth/me", headers={**bearer("expired.or.bad", "alpha"), "Origin": APP}
    )
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP
    r = await world.post("/auth/login", {"email": "x@example.com", "password": "p"}, Origin=APP)
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP


async def test_other_paths_are_not_cors_enabled(world: World) -> None:
    r = await world.client.get("/healthz", headers={"Origin": APP})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = await world.client.options(
        "/admin/v1/projects", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in r.headers
