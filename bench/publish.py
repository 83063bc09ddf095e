"""S7: from a publish returning to the first request served with the new release.

Each sample publishes the project with `logics/version.sql` answering a new number through the
admin API of replica A, then polls `logics/version` back to back on replica A (the one that
published: local invalidation) and on replica B (another Bridge process on the same registry
and Redis: invalidation by pub/sub) until each answers the new number. Both are timed from the
moment the publish response arrived.
"""

from __future__ import annotations

import time
from typing import Any

from bench.client import Client
from bench.context import ENV, Bench, host
from bench.procs import Server
from bench.stats import summary_ms

TARGET_MS = 50.0
TITLE = "publish returned → first request served with the new release"
VERSION_FILE = "logics/version.sql"
DEADLINE_S = 10.0


def _version_file(bench: Bench, number: int) -> str:
    original = bench.files[VERSION_FILE]
    assert "SELECT 0 AS v" in original
    return original.replace("SELECT 0 AS v", f"SELECT {number} AS v")


def measure(bench: Bench, a: Server, b: Server, project: str, count: int) -> dict[str, Any]:
    admin = Client(a.port)
    replicas = {"sameReplica": Client(a.port), "otherReplica": Client(b.port)}
    headers = {"Host": host(project)}
    body = {"path": "logics/version"}
    for client in replicas.values():
        status, data, _ = client.request("POST", "/call", body, headers)
        if status != 200:
            raise RuntimeError(f"S7: version logic answered {status}: {data}")
    samples: dict[str, list[float]] = {"publishCall": [], **{name: [] for name in replicas}}
    url = f"/admin/v1/projects/{project}/envs/{ENV}/releases"
    try:
        for number in range(1, count + 1):
            files = {**bench.files, VERSION_FILE: _version_file(bench, number)}
            status, data, took = admin.request("POST", url, {"files": files}, bench.admin())
            published = time.perf_counter()
            if status != 201:
                raise RuntimeError(f"S7: publish answered {status}: {data}")
            samples["publishCall"].append(took)
            pending = dict(replicas)
            while pending:
                for name, client in list(pending.items()):
                    status, data, _ = client.request("POST", "/call", body, headers)
                    if status == 200 and data["data"][0]["v"] == number:
                        samples[name].append(time.perf_counter() - published)
                        del pending[name]
                if time.perf_counter() - published > DEADLINE_S:
                    raise RuntimeError(f"S7: release {number} not served in {DEADLINE_S}s")
            time.sleep(0.05)
    finally:
        for client in (admin, *replicas.values()):
            client.close()
    same = summary_ms(samples["sameReplica"])
    return {
        "title": TITLE,
        "status": "ok",
        "sameReplica": same,
        "otherReplica": summary_ms(samples["otherReplica"]),
        "publishCall": summary_ms(samples["publishCall"]),
        "target": {"p50_ms": TARGET_MS},
        "met": same["p50_ms"] <= TARGET_MS,
    }
