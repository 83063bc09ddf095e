"""Health, readiness, request ids and metrics over the real app."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from support.bridge import running_bridge
from support.pools import sqlite_threads
from support.world import World

# A failed SQLite open whose aiosqlite thread outlives the test's event loop fails in that thread;
# pytest reports it at the next test phase, so this module's tests would report it.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

HOST = {"Host": "shop.api.example.com"}


async def test_healthz(bridge):
    response = await bridge.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_readyz_reports_an_unreachable_kv_store(tmp_path):
    kv_dir = tmp_path / "kv"
    async with running_bridge(tmp_path, kv_url=f"file://{kv_dir}") as bridge:
        assert (await bridge.client.get("/readyz")).json() == {"ok": True}
        shutil.rmtree(kv_dir)
        kv_dir.write_text("not a directory any more")
        response = await bridge.client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"ok": False, "reason": "kv unreachable", "degraded": ["kv"]}


async def test_readyz_reports_an_unreachable_registry(bridge):
    # The start-up audit prune may still hold a connection (it would recreate the file).
    for _ in range(100):
        if not bridge.rt.engine.pool.checkedout():
            break
        await asyncio.sleep(0.05)
    await bridge.rt.engine.dispose()
    (bridge.data_dir / "registry.db").unlink()
    (bridge.data_dir / "registry.db").mkdir()  # SQLite cannot open a directory
    before = sqlite_threads()
    for _ in range(5):  # the failed opens' threads have ended: checked at once, five times over
        response = await bridge.client.get("/readyz")
        assert sqlite_threads() <= before
    assert response.status_code == 503
    assert response.json() == {
        "ok": False,
        "reason": "registry unreachable",
        "degraded": ["registry"],
    }


async def test_readyz_for_a_tenant(bridge):
    unknown = await bridge.client.get("/readyz", params={"project": "nope-nope"})
    assert unknown.status_code == 503 and unknown.json() == {"ok": False}
    await World(bridge).demo("shop")
    ready = await bridge.client.get("/readyz", params={"project": "shop", "env": "prod"})
    assert ready.status_code == 200 and ready.json() == {"ok": True}
    (bridge.data_dir / "shop.db").unlink()
    await bridge.rt.pools.close_all()
    gone = await bridge.client.get("/readyz", params={"project": "shop"})
    assert gone.status_code == 503


async def test_request_id_is_reused_when_valid_and_replaced_otherwise(bridge):
    kept = await bridge.client.get("/healthz", headers={"X-Request-Id": "abc.DEF_123-x"})
    assert kept.headers["x-request-id"] == "abc.DEF_123-x"
    replaced = await bridge.client.get("/healthz", headers={"X-Request-Id": "bad id!" * 20})
    assert re.fullmatch(r"[0-9A-Z]{26}", replaced.headers["x-request-id"])
    headers = {"X-Request-Id": "r-1", "Content-Type": "application/json"}
    error = await bridge.client.post("/call", content=b"[", headers=headers)
    assert error.status_code == 400
    assert error.json()["error"]["requestId"] == "r-1" == error.headers["x-request-id"]


async def test_unknown_route_and_method_use_the_envelope(bridge):
    missing = await bridge.client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await bridge.client.get("/call")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert wrong.json()["error"]["requestId"] == wrong.headers["x-request-id"]


async def test_metrics_count_requests_by_route_kind(bridge):
    key = await World(bridge).demo("shop")
    for _ in range(3):
        response = await bridge.client.post(
            "/call",
            json={"path": "logics/admin/activity"},
            headers={**HOST, "X-Santokit-Api-Key": key},
        )
        assert response.status_code == 200
    text = (await bridge.client.get("/metrics")).text
    assert 'stk_requests_total{route_kind="logics",status="200"} 3.0' in text
    assert "stk_pools_open 1.0" in text
    assert "shop" not in text  # no tenant label by default


async def test_tenant_concurrency_limit_sheds_with_503(bridge, caplog):
    key = await World(bridge).demo("shop")
    await bridge.admin("PATCH", "/projects/shop", 200, json={"limits": {"maxConcurrency": 1}})
    record = await bridge.rt.directory.project("shop")
    from tenancy.principal import Tenant

    assert record.limits.max_concurrency == 1
    with bridge.rt.limits.slot(Tenant("shop", "prod"), record.limits):
        shed = await bridge.client.post(
            "/call",
            json={"path": "logics/public/stats"},
            headers={**HOST, "X-Santokit-Api-Key": key},
        )
    assert shed.status_code == 503
    assert shed.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    # The reason reaches the log (the access line alone only says 503).
    failed = [r for r in caplog.records if r.getMessage().startswith("tenant request failed")]
    assert [r.getMessage() for r in failed] == [
        "tenant request failed: Too many concurrent requests for this project"
    ]
    after = await bridge.client.post(
        "/call", json={"path": "logics/public/stats"}, headers={**HOST, "X-Santokit-Api-Key": key}
    )
    assert after.status_code == 200


async def test_metrics_tenant_label_is_opt_in(tmp_path):
    async with running_bridge(tmp_path, metrics_tenant_label=True) as bridge:
        key = await World(bridge).demo("shop")
        response = await bridge.client.post(
            "/call",
            json={"path": "logics/public/stats"},
            headers={**HOST, "X-Santokit-Api-Key": key},
        )
        assert response.status_code == 200
        text = (await bridge.client.get("/metrics")).text
    assert 'stk_requests_total{project="shop",route_kind="logics",status="200"} 1.0' in text


async def test_readyz_for_a_tenant_uses_its_pool_as_it_is(bridge):
    key = await World(bridge).demo("shop")
    limits = {"maxPoolSize": 2, "statementTimeoutMs": 3000}
    patched = await bridge.client.patch(
        "/admin/v1/projects/shop", json={"limits": limits}, headers=bridge.admin_headers
    )
    assert patched.status_code == 200
    call = {"path": "logics/public/stats"}
    headers = {**HOST, "X-Santokit-Api-Key": key}
    assert (await bridge.client.post("/call", json=call, headers=headers)).status_code == 200
    pools = bridge.rt.pools
    opened = pools.connects
    for _ in range(5):
        ready = await bridge.client.get("/readyz", params={"project": "shop"})
        assert ready.status_code == 200
        assert (await bridge.client.post("/call", json=call, headers=headers)).status_code == 200
    # Probes neither resize nor replace the tenant's pool (with the default limits they did).
    assert pools.connects == opened
    assert [p["max_size"] for p in pools.stats("shop")] == [2]
