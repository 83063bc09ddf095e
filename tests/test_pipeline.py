"""The composed app (`docs/architecture.md`): one place turns an unexpected exception into the 500
envelope and one logged traceback, for `/call` and FastAPI's routes alike; CORS reads what
admission recorded and locates the tenant from the hints at most once per request."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

import tenancy.calls
from bridge import metrics
from tenancy.resolution import Located, locate

from support.auth import auth_world
from support.bridge import Bridge, running_bridge
from support.world import World, bearer, host

HOST = {"Host": "shop.api.example.com"}
CLOCK = "---\nauth: public\n---\nSELECT '10:00:00+02'::timetz AS t"
APP = "https://app.alpha.test"  # the origin alpha's prod release allows (`support/auth.py`)


def unhandled(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "unhandled error"]


def internal_error(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert response.json()["error"] == {
        "code": "INTERNAL_ERROR",
        "message": "Internal error",
        "requestId": response.headers["x-request-id"],
    }


async def test_an_unexpected_error_on_call_is_one_envelope_and_one_log(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real one: orjson cannot encode PostgreSQL `timetz` (`tenancy/encode.py`)."""
    async with running_bridge(tmp_path) as b:
        world = World(b)
        await world.project("shop")
        await world.tenant("shop", "prod", pg_url, {"logics/clock.sql": CLOCK})
        caplog.clear()
        with caplog.at_level(logging.INFO):
            r = await b.client.post("/call", json={"path": "logics/clock"}, headers=HOST)
        internal_error(r)
        [record] = unhandled(caplog)
        assert record.exc_info is not None
        # The access line still names the tenant and the route.
        [access] = [x for x in caplog.records if x.getMessage() == "POST logics/clock 500"]
        assert access.__dict__["project"] == "shop" and access.__dict__["env"] == "prod"


async def test_an_unexpected_error_on_a_fastapi_route_is_answered_the_same_way(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> bytes:
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(metrics, "generate_latest", broken)
    caplog.clear()
    internal_error(await bridge.client.get("/metrics"))
    [record] = unhandled(caplog)
    assert record.exc_info is not None and "exporter failed" in str(record.exc_info[1])


async def test_cors_locates_the_tenant_at_most_once_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    located = 0

    async def counting(*args: Any) -> Located:
        nonlocal located
        located += 1
        return await locate(*args)

    monkeypatch.setattr(tenancy.calls, "locate", counting)

    def allowed(response: httpx.Response, status: int) -> bool:
        """Whether the answer lets APP read it, after checking the hints were located once."""
        nonlocal located
        assert response.status_code == status, response.text
        assert located == 1
        located = 0
        return response.headers.get("access-control-allow-origin") == APP

    async with auth_world(tmp_path) as world:
        token = (await world.session())["access_token"]
        located = 0
        good, bad = bearer(token, "alpha"), bearer("expired.or.bad", "alpha")
        whoami, origin = {"path": "logics/whoami"}, {"Origin": APP}
        client = world.client
        # Admitted: CORS reads the admitted env's release.
        assert allowed(await client.post("/call", json=whoami, headers={**good, **origin}), 200)
        assert allowed(await client.get("/auth/me", headers={**good, **origin}), 200)
        # Admission failed on the credential: CORS reuses the project admission located.
        assert allowed(await client.get("/auth/me", headers={**bad, **origin}), 401)
        assert allowed(await client.post("/call", json=whoami, headers={**bad, **origin}), 401)
        # Admission never ran (the body is refused first): CORS locates, once.
        json_type = {"Content-Type": "application/json"}
        r = await client.post(
            "/call", content=b"{", headers={**host("alpha"), **origin, **json_type}
        )
        assert allowed(r, 400)
        # A preflight is decided on the located project alone.
        preflight = {**host("alpha"), **origin, "Access-Control-Request-Method": "POST"}
        assert allowed(await client.options("/call", headers=preflight), 204)
