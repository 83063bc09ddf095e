"""Browser rules in the app (`docs/api.md` CORS, `docs/browser.md`): JSON only on the data plane
(415), an origin the tenant does not allow refused before any work (403, nothing counted), and
every answer, whichever layer wrote it, readable by an allowed origin. The same flows run in a
real browser in `tests/browser/`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from support.bridge import running_bridge
from support.world import World, host

APP = "http://localhost:5173"  # the demo's `cors.origins`
EVIL = "https://evil.example"
STATS = {"path": "logics/public/stats"}
CATEGORY = {"path": "db/categories/insert", "params": {"values": {"name": "from-elsewhere"}}}


def readable(response: httpx.Response, origin: str = APP) -> bool:
    """Whether a browser at `origin` can read this answer (and the answer varies on Origin)."""
    assert response.headers.get("vary") == "Origin", response.headers
    return response.headers.get("access-control-allow-origin") == origin


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return str(response.json()["error"]["message"])


async def categories(world: World, project: str) -> int:
    r = await world.call("db/categories/select", {}, project=project, key=project)
    assert r.status_code == 200, r.text
    return len(r.json()["data"])


async def limit(world: World, project: str, per_minute: int) -> None:
    limits = {"limits": {"requestsPerMinute": per_minute}}
    await world.admin("PATCH", f"/projects/{project}", 200, json=limits)


async def test_data_plane_posts_must_be_json(bridge) -> None:
    """A form or `text/plain` post is what a browser sends cross-origin without a preflight: it is
    refused before its body is read, and costs the tenant nothing."""
    world = World(bridge)
    await world.demo("shop")
    await limit(world, "shop", 2)
    body = b'{"path": "logics/public/stats"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None, "text/json"):
        headers = {**host("shop"), "Origin": EVIL}
        if content_type:
            headers["Content-Type"] = content_type
        for path in ("/call", "/auth/login", "/auth/signup"):
            r = await bridge.client.post(path, content=body, headers=headers)
            error(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    charset = {**host("shop"), "Content-Type": "Application/JSON; charset=utf-8"}
    assert (await bridge.client.post("/call", content=body, headers=charset)).status_code == 200
    assert (await world.call("logics/public/stats", project="shop")).status_code == 200
    assert (await world.call("logics/public/stats", project="shop")).status_code == 429


async def test_an_origin_not_allowed_is_refused_before_any_work(bridge) -> None:
    world = World(bridge)
    await world.demo("shop")
    before = await categories(world, "shop")
    await limit(world, "shop", 3)
    for _ in range(5):
        r = await world.call(
            CATEGORY["path"],
            CATEGORY["params"],
            project="shop",
            key="shop",
            headers={"Origin": EVIL},
        )
        assert error(r, 403, "FORBIDDEN") == "Origin not allowed"
        assert not readable(r, EVIL)
    login = {"email": "a@example.com", "password": "whatever-it-is"}
    r = await bridge.client.post(
        "/auth/login", json=login, headers={**host("shop"), "Origin": EVIL}
    )
    error(r, 403, "FORBIDDEN")
    # Nothing was written and nothing counted: the budget of 3 is whole.
    assert await categories(world, "shop") == before
    for _ in range(2):
        ok = await world.call("logics/public/stats", project="shop", headers={"Origin": APP})
        assert ok.status_code == 200 and readable(ok)


async def test_every_layer_answers_readably(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, max_body_bytes=65536, body_timeout_seconds=0.3) as bridge:
        world = World(bridge)
        await world.demo("shop")
        origin = {**host("shop"), "Origin": APP}
        json_type = {**origin, "Content-Type": "application/json"}

        big = await bridge.client.post("/call", content=b" " * 70000, headers=json_type)
        error(big, 413, "PAYLOAD_TOO_LARGE")
        assert readable(big)
        exposed = big.headers["access-control-expose-headers"]
        assert {"x-request-id", "retry-after", "ratelimit-policy", "ratelimit"} <= {
            h.strip() for h in exposed.split(",")
        }

        async def slow():
            yield b"{"
            await asyncio.sleep(2)

        late = await bridge.client.post("/call", content=slow(), headers=json_type)
        error(late, 408, "REQUEST_TIMEOUT")
        assert readable(late)

        plain = await bridge.client.post("/call", content=b"{}", headers=origin)
        error(plain, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert readable(plain)

        invalid = await bridge.client.get("/call", headers={**origin, "Content-Length": "abc"})
        assert error(invalid, 400, "BAD_REQUEST") == "Invalid Content-Length"
        assert readable(invalid)

        wrong = await bridge.client.get("/call", headers=origin)
        error(wrong, 405, "METHOD_NOT_ALLOWED")
        assert readable(wrong)

        typo = await world.call("logics/public/stats", headers={**origin, "X-Santokit-Env": "prdo"})
        error(typo, 404, "NOT_FOUND")
        assert readable(typo)  # judged by the project's envs

        await limit(world, "shop", 1)
        await world.call("logics/public/stats", headers=origin)
        limited = await world.call("logics/public/stats", headers=origin)
        error(limited, 429, "TOO_MANY_REQUESTS")
        assert readable(limited) and int(limited.headers["retry-after"]) >= 1

        # No tenant to judge the origin by: the answer varies on Origin, and allows none.
        unknown = await world.call("logics/public/stats", headers={**host("nobody"), "Origin": APP})
        error(unknown, 404, "NOT_FOUND")
        assert not readable(unknown)
        # Headers refused unread are not judged either.
        twice = [(b"host", b"shop.api.example.com"), (b"origin", APP.encode())] * 2
        refused = await bridge.client.post("/call", json=STATS, headers=twice)
        error(refused, 400, "BAD_REQUEST")
        assert not readable(refused)


async def test_a_500_is_readable(tmp_path: Path, pg_url: str) -> None:
    """A real one: orjson cannot encode PostgreSQL `timetz` (`tests/test_pipeline.py`)."""
    clock = "---\nauth: public\n---\nSELECT '10:00:00+02'::timetz AS t"
    files = {"logics/clock.sql": clock, "config/auth.yaml": f'cors: {{origins: ["{APP}"]}}\n'}
    async with running_bridge(tmp_path) as bridge:
        world = World(bridge)
        await world.project("shop")
        await world.tenant("shop", "prod", pg_url, files)
        r = await world.call("logics/clock", project="shop", headers={"Origin": APP})
        error(r, 500, "INTERNAL_ERROR")
        assert readable(r)


@pytest.mark.parametrize("path", ["/call", "/auth/login"])
async def test_preflight_is_not_a_post(bridge, path: str) -> None:
    """The JSON rule is for posts: a preflight (no body, no Content-Type) is answered as before."""
    await World(bridge).demo("shop")
    headers = {**host("shop"), "Origin": APP, "Access-Control-Request-Method": "POST"}
    r = await bridge.client.options(path, headers=headers)
    assert r.status_code == 204 and readable(r)
    assert r.headers["access-control-max-age"] == "600"
