"""S1-S4: the Bridge and the floor under the same wrk load, alternating, in the same run; S8: the
Bridge's `upload_sign` against its own S1, alternating, in the same run.

Each server first serves one request per tenant of the scenario (so S4's 100 pools are open
before any timing), then a wrk warm-up (pools grow, caches and prepared statements fill), then
`reps` measured runs each, alternating which goes first, so drift on a noisy machine hits both
alike. Figures are medians over the runs; the ratio is taken per pair of neighbouring runs, then
its median.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import load
from bench.client import Client
from bench.context import Bench, host
from bench.fleet import Tenant
from bench.procs import Server

# (min Bridge/floor throughput, max Bridge/floor p99) from the issue.
# Issue 12's targets (issue 4's S1 p99 bound kept): ratios to the floor, same run.
TARGETS: dict[str, dict[str, float]] = {
    "S1": {"rps": 1.1, "cpu": 0.85, "p99": 1.2},
    "S2": {"rps": 0.95},
    "S3": {"rps": 0.95},
    "S4": {"rps": 1.0},
}
ITEMS = 10_000  # rows of `items` in every tenant database (seed/postgresql.sql)
# The floor's SQL for the auto-CRUD scenarios, as the Bridge's SQL builder wrote it when this was
# written. Every run reads the statements the Bridge really runs from the PostgreSQL log and
# compares (`sameSql` in the results): update these when the builder changes.
S2_SQL = (
    'SELECT "id", "owner_id", "title", "pinned", "created_at" FROM "notes" '
    'WHERE "pinned" = $1 AND "owner_id" = $2 ORDER BY "created_at" DESC LIMIT $3 OFFSET $4'
)
S3_SQL = (
    'INSERT INTO "entries" ("id", "owner_id", "title") VALUES ($1, $2, $3) '
    'RETURNING "id", "owner_id", "title", "created_at"'
)
JSON = {"Content-Type": "application/json"}
TITLES = {
    "S1": "logics/items/get: SELECT by primary key, API-key caller",
    "S2": "db/notes/select: where + orderBy + limit, end-user JWT, row filter",
    "S3": "db/entries/insert: one row, API-key caller, RETURNING the row",
    "S4": "1,000 registered tenants, traffic uniform over 100 (pools warm), same logic as S1",
    "S8": "storage/files/upload_sign: policy with a CEL condition, SigV4 URL, API-key caller",
}
# S8: the Bridge's CPU per upload_sign request at most this multiple of its CPU per S1 request.
S8_TARGET = 1.2


@dataclass
class Scenario:
    name: str
    title: str
    requests: list[tuple[dict[str, str], str]]
    floor_route: dict[str, Any]
    floor_tenants: dict[str, str]  # host → database URL
    same_rows: bool = True  # responses must be equal (not for inserts: new ids)
    notes: dict[str, Any] = field(default_factory=dict)


def _request(headers: dict[str, str], body: dict[str, Any]) -> tuple[dict[str, str], str]:
    return {**JSON, **headers}, orjson.dumps(body).decode()


def item_request(tenant_host: str, api_key: str, item: int) -> tuple[dict[str, str], str]:
    body = {"path": "logics/items/get", "params": {"id": item}}
    return _request({"Host": tenant_host, "X-Santokit-Api-Key": api_key}, body)


def s1(bench: Bench, api_key: str, logic_sql: str, project: str = "bench") -> Scenario:
    rng = random.Random(1)
    ids = rng.sample(range(1, ITEMS + 1), 1000)
    return Scenario(
        "S1",
        TITLES["S1"],
        [item_request(host(project), api_key, i) for i in ids],
        {"sql": logic_sql, "args": [["params", "id"]]},
        {host("bench"): bench.pg.url(bench.app_db)},
    )


def s4(bench: Bench, active: list[Tenant], logic_sql: str) -> Scenario:
    rng = random.Random(4)
    requests = [
        item_request(t.host, t.api_key or "", i)
        for t in active
        for i in rng.sample(range(1, ITEMS + 1), 20)
    ]
    tenants = {t.host: bench.fleet_dbs[int(t.project[1:]) % len(bench.fleet_dbs)] for t in active}
    return Scenario(
        "S4",
        TITLES["S4"],
        requests,
        {"sql": logic_sql, "args": [["params", "id"]]},
        tenants,
        notes={"activeTenants": len(active)},
    )


def s2(bench: Bench, token: str, sub: str, project: str = "bench") -> Scenario:
    body = {
        "path": "db/notes/select",
        "params": {"where": {"pinned": False}, "orderBy": {"created_at": "desc"}, "limit": 10},
    }
    headers = {"Host": host(project), "Authorization": f"Bearer {token}"}
    return Scenario(
        "S2",
        TITLES["S2"],
        [_request(headers, body)],
        {
            "sql": S2_SQL,
            "args": [
                ["params", "where", "pinned"],
                {"const": sub},  # the token's subject: the floor does not verify tokens
                ["params", "limit"],
                {"const": 0},  # the offset the Bridge binds when none is given
            ],
        },
        {host("bench"): bench.pg.url(bench.app_db)},
    )


def s3(bench: Bench, api_key: str) -> Scenario:
    requests = [
        _request(
            {"Host": host("bench"), "X-Santokit-Api-Key": api_key},
            {
                "path": "db/entries/insert",
                "params": {"data": {"owner_id": "bench", "title": f"e{i}"}},
            },
        )
        for i in range(100)
    ]
    return Scenario(
        "S3",
        TITLES["S3"],
        requests,
        {
            "sql": S3_SQL,
            "args": ["ulid", ["params", "data", "owner_id"], ["params", "data", "title"]],
        }
        | {"one": True},
        {host("bench"): bench.pg.url(bench.app_db)},
        same_rows=False,
    )


def s8(api_key: str, key_id: str) -> Scenario:
    """1,000 distinct keys under the caller's own prefix (the policy binds it to the key id)."""
    requests = [
        _request(
            {"Host": host("bench"), "X-Santokit-Api-Key": api_key},
            {
                "path": "storage/files/upload_sign",
                "params": {
                    "key": f"uploads/{key_id}/photo-{i}.png",
                    "contentType": "image/png",
                    "contentLength": 1000 + i,
                },
            },
        )
        for i in range(1000)
    ]
    return Scenario("S8", TITLES["S8"], requests, {}, {})


def probe(scenario: Scenario, bridge: Server, floor: Server) -> None:
    """Both servers answer the scenario's first request with 200 and the same data."""
    headers, body = scenario.requests[0]
    answers = []
    for server in (bridge, floor):
        client = Client(server.port)
        status, data, _ = client.request("POST", "/call", body, headers)
        client.close()
        if status != 200:
            raise RuntimeError(f"{scenario.name}: {server.name} answered {status}: {data}")
        answers.append(data)
    if scenario.same_rows:
        same = answers[0] == answers[1]
    else:
        same = set(answers[0]["data"]) == set(answers[1]["data"])
    scenario.notes["sameResponse"] = same
    if not same:
        print(f"  ! {scenario.name}: Bridge and floor answers differ: {answers[0]} / {answers[1]}")


def prime(scenario: Scenario, server: Server) -> None:
    """One request per tenant (Host) of the scenario, one at a time."""
    first: dict[str, tuple[dict[str, str], str]] = {}
    for headers, body in scenario.requests:
        first.setdefault(headers["Host"], (headers, body))
    client = Client(server.port)
    try:
        for headers, body in first.values():
            status, data, _ = client.request("POST", "/call", body, headers)
            if status != 200:
                raise RuntimeError(f"{scenario.name}: {server.name} answered {status}: {data}")
    finally:
        client.close()


def measure(bench: Bench, scenario: Scenario, bridge: Server, floor: Server) -> dict[str, Any]:
    plan = bench.plan
    path = load.write_requests(bench.workdir / f"{scenario.name}.requests.lua", scenario.requests)

    def run(server: Server, seconds: int) -> load.Run:
        return load.run_wrk(server, path, seconds, plan.connections, bench.load_cpu)

    for server in (bridge, floor):
        prime(scenario, server)
        run(server, plan.warmup_s)
    runs: dict[str, list[load.Run]] = {"bridge": [], "floor": []}
    for rep in range(plan.reps):
        order = [("bridge", bridge), ("floor", floor)]
        if rep % 2:
            order.reverse()
        for role, server in order:
            result = run(server, plan.seconds)
            runs[role].append(result)
            print(
                f"  {scenario.name} rep {rep + 1} {role:6} {result.rps:9.1f} req/s  "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                f"server cpu {result.server_cpu:.2f} ({result.cpu_us_per_request:.0f} µs/req)  "
                f"wrk cpu {result.loadgen_cpu:.2f}"
                + (f"  ERRORS {result.errors}" if result.failed else "")
            )
    return summarize(scenario, runs)


def measure_against(
    bench: Bench, scenario: Scenario, baseline: Scenario, bridge: Server
) -> dict[str, Any]:
    """`scenario` and `baseline` on the same Bridge, alternating: CPU per request of one against
    the other, per neighbouring pair, then the median (S8 against S1)."""
    runs = alternate(bench, [scenario, baseline], bridge, warm=[scenario])
    pairs = list(zip(runs[scenario.name], runs[baseline.name], strict=True))
    cpu = round(statistics.median(a.cpu_us_per_request / b.cpu_us_per_request for a, b in pairs), 3)
    failed = sum(r.failed for rs in runs.values() for r in rs)
    return {
        "title": scenario.title,
        "status": "ok" if not failed else "errors",
        "bridge": _figures(runs[scenario.name]),
        "baseline": baseline.name,
        "baselineBridge": _figures(runs[baseline.name]),
        "ratio": {
            "cpuPerRequest": cpu,
            "rps": round(statistics.median(a.rps / b.rps for a, b in pairs), 3),
        },
        "target": {"cpuPerRequest": S8_TARGET},
        "met": cpu <= S8_TARGET,
        "notes": scenario.notes,
        "runs": {name: [r.as_json() for r in rs] for name, rs in runs.items()},
    }


def alternate(
    bench: Bench, scenarios: list[Scenario], bridge: Server, warm: list[Scenario]
) -> dict[str, list[load.Run]]:
    """`scenarios` (distinct names) on the same Bridge, one run each per repetition, the order
    rotated every repetition; `warm` are primed and warmed up first."""
    plan = bench.plan
    paths = {
        s.name: load.write_requests(bench.workdir / f"{s.name}.requests.lua", s.requests)
        for s in scenarios
    }

    def run(name: str, seconds: int) -> load.Run:
        return load.run_wrk(bridge, paths[name], seconds, plan.connections, bench.load_cpu)

    for scenario in warm:
        prime(scenario, bridge)
        run(scenario.name, plan.warmup_s)
    runs: dict[str, list[load.Run]] = {s.name: [] for s in scenarios}
    names = list(runs)
    for rep in range(plan.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            result = run(name, plan.seconds)
            runs[name].append(result)
            print(
                f"  rep {rep + 1} {name:15} {result.rps:9.1f} req/s  "
                f"p99 {result.p99_ms:6.2f} ms  server cpu {result.server_cpu:.2f} "
                f"({result.cpu_us_per_request:.0f} µs/req)"
                + (f"  ERRORS {result.failed}" if result.failed else "")
            )
    return runs


def measure_variants(bench: Bench, variants: list[Scenario], bridge: Server) -> dict[str, Any]:
    """The same requests by other paths (`docs/poolers.md`: direct, then through poolers) on
    the same Bridge, alternating: each one's figures and its ratios to the first, per
    neighbouring runs, then the median."""
    runs = alternate(bench, variants, bridge, warm=variants)
    first = variants[0].name
    answer: dict[str, Any] = {}
    for variant in variants:
        mine = runs[variant.name]
        pairs = list(zip(mine, runs[first], strict=True))
        answer[variant.name] = {
            "bridge": _figures(mine),
            "ratio": {
                "rps": round(statistics.median(a.rps / b.rps for a, b in pairs), 3),
                "p99": round(statistics.median(a.p99_ms / b.p99_ms for a, b in pairs), 3),
                "cpuPerRequest": round(
                    statistics.median(
                        a.cpu_us_per_request / b.cpu_us_per_request for a, b in pairs
                    ),
                    3,
                ),
            },
            "notes": variant.notes,
            "runs": [r.as_json() for r in mine],
        }
    return answer


def _figures(runs: list[load.Run]) -> dict[str, Any]:
    """Medians over the runs of one server and scenario."""

    def median(attr: str) -> float:
        return round(float(statistics.median(getattr(r, attr) for r in runs)), 3)

    attrs = (
        *("rps", "p50_ms", "p90_ms", "p99_ms"),
        *("server_cpu", "cpu_us_per_request", "loadgen_cpu"),
    )
    return {attr: median(attr) for attr in attrs} | {"failedRequests": sum(r.failed for r in runs)}


def summarize(scenario: Scenario, runs: dict[str, list[load.Run]]) -> dict[str, Any]:
    figures = {role: _figures(runs[role]) for role in runs}
    pairs = list(zip(runs["bridge"], runs["floor"], strict=True))
    ratio = {
        "rps": round(statistics.median(b.rps / f.rps for b, f in pairs), 3),
        "p50": round(statistics.median(b.p50_ms / f.p50_ms for b, f in pairs), 3),
        "p99": round(statistics.median(b.p99_ms / f.p99_ms for b, f in pairs), 3),
        "cpuPerRequest": round(
            statistics.median(b.cpu_us_per_request / f.cpu_us_per_request for b, f in pairs), 3
        ),
    }
    target = TARGETS.get(scenario.name, {})
    met = None
    if target:
        met = (
            ratio["rps"] >= target["rps"]
            and ratio["p99"] <= target.get("p99", float("inf"))
            and ratio["cpuPerRequest"] <= target.get("cpu", float("inf"))
        )
    failed = sum(figures[role]["failedRequests"] for role in figures)
    return {
        "title": scenario.title,
        "status": "ok" if not failed else "errors",
        "bridge": figures["bridge"],
        "floor": figures["floor"],
        "ratio": ratio,
        "target": target or None,
        "met": met,
        "notes": scenario.notes,
        "runs": {role: [r.as_json() for r in rs] for role, rs in runs.items()},
    }
