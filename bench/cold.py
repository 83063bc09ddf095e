"""S5: the first request of a tenant the process has never served.

It pays for everything the hot path caches: tenant resolution and the API-key check (registry
reads), decrypting the connection secret, loading the release (manifest and bundle from the KV
store, hash check, `Release.load`), building the pool and opening its first PostgreSQL
connection. Timed one request at a time from the client side on one keep-alive connection, on
the warm main Bridge; each tenant's second request is timed too, for contrast.
"""

from __future__ import annotations

from typing import Any

from bench.client import Client
from bench.fleet import Tenant
from bench.procs import Server
from bench.stats import summary_ms
from bench.throughput import item_request

TARGET_P50_MS = 20.0  # issue 12 (issue 4 asked 30)
TITLE = "cold first request of never-served tenants (API-key caller, logic)"


def measure(bridge: Server, tenants: list[Tenant]) -> dict[str, Any]:
    client = Client(bridge.port)
    cold: list[float] = []
    warm: list[float] = []
    try:
        for index, tenant in enumerate(tenants):
            headers, body = item_request(tenant.host, tenant.api_key or "", index + 1)
            for samples in (cold, warm):
                status, data, elapsed = client.request("POST", "/call", body, headers)
                if status != 200:
                    raise RuntimeError(f"S5: {tenant.project} answered {status}: {data}")
                samples.append(elapsed)
    finally:
        client.close()
    first = summary_ms(cold)
    return {
        "title": TITLE,
        "tenants": len(tenants),
        "status": "ok",
        "cold": first,
        "warm": summary_ms(warm),
        "target": {"p50_ms": TARGET_P50_MS},
        "met": first["p50_ms"] <= TARGET_P50_MS,
    }
