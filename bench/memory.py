"""S6: resident memory per registered idle tenant and per active tenant with an open pool.

For each registry size a fresh Bridge process starts (pinned like the others) and gets the same
warm-up (`/readyz` and `/healthz` requests); its RSS then gives the idle cost: (RSS at N - RSS at
the smallest N) / extra tenants. Then a few tenants are served once (first-use code paths, not
counted), RSS is read, `active` more tenants are served once each (caches filled, release
loaded, pool open with one connection) and RSS is read again: the difference per tenant is the
cost of an active tenant. RSS is the median of several reads after a short settle.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench import procs
from bench.client import Client
from bench.context import Bench
from bench.fleet import Tenant
from bench.throughput import item_request

TARGET_IDLE_BYTES = 20 * 1024
TITLE = "resident memory per idle registered tenant and per active tenant"
WARM_REQUESTS = 200
FIRST_USE = 5  # tenants served before the "active" baseline, so one-time costs stay out


def _rss(server: procs.Server) -> int:
    time.sleep(0.3)
    samples = []
    for _ in range(5):
        samples.append(server.rss_bytes())
        time.sleep(0.05)
    return int(statistics.median(samples))


def _serve_once(client: Client, tenants: list[Tenant]) -> None:
    for index, tenant in enumerate(tenants):
        headers, body = item_request(tenant.host, tenant.api_key or "", index + 1)
        status, data, _ = client.request("POST", "/call", body, headers)
        if status != 200:
            raise RuntimeError(f"S6: {tenant.project} answered {status}: {data}")


def measure(bench: Bench, tag: str, keyed: list[Tenant], active: int) -> dict[str, Any]:
    """One registry size; `keyed` tenants (with API keys) provide the first-use and active ones."""
    registered = bench.registered()
    server = procs.bridge(bench.bridge_env(), bench.server_cpu, bench.workdir, f"s6-{tag}")
    client = Client(server.port)
    try:
        for i in range(WARM_REQUESTS):
            client.request("GET", "/readyz" if i % 2 else "/healthz")
        point: dict[str, Any] = {"registered": registered, "rssIdleBytes": _rss(server)}
        if keyed:
            first_use, serving = keyed[:FIRST_USE], keyed[FIRST_USE : FIRST_USE + active]
            _serve_once(client, first_use)
            before = _rss(server)
            _serve_once(client, serving)
            after = _rss(server)
            connections = asyncio.run(bench.pg.connections("stk-bridge"))
            point |= {
                "active": len(serving),
                "rssBeforeActiveBytes": before,
                "rssAfterActiveBytes": after,
                "perActiveTenantBytes": round((after - before) / len(serving)),
                "bridgeConnectionsOpen": connections,
            }
    finally:
        client.close()
        server.stop()
    print(f"  S6 {tag}: {point}")
    return point


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    base = points[0]
    for point in points[1:]:
        extra = point["registered"] - base["registered"]
        if extra > 0:
            delta = point["rssIdleBytes"] - base["rssIdleBytes"]
            point["perIdleTenantBytes"] = round(delta / extra)
    idle = [p["perIdleTenantBytes"] for p in points if "perIdleTenantBytes" in p]
    return {
        "title": TITLE,
        "status": "ok",
        "points": points,
        "target": {"perIdleTenantBytes": TARGET_IDLE_BYTES},
        "met": bool(idle) and max(idle) <= TARGET_IDLE_BYTES,
    }
