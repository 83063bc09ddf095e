"""`make bench` / `make bench QUICK=1`: scenarios S1-S7 of issue 4.

Order (each step needs what the previous one built):
  provision PostgreSQL databases and a Redis prefix → migrate the registry → S6 at 0 tenants →
  register the fleet (1,000) → S6 at 1,000 → main Bridge + bench projects via the admin API →
  floor → S1, S2, S3, S4 (Bridge and floor alternating) → S8 (upload_sign against S1 on the
  Bridge) → S5 → S7 (with a second replica) →
  grow the fleet to 10,000 → S6 at 10,000 → clean up → JSON + RESULTS.md.
Everything started here is stopped, and everything created is dropped, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import cold, fleet, memory, procs, publish, report, setup, throughput
from bench.client import Client
from bench.context import (
    FULL,
    HOST_SUFFIX,
    POOL_MAX_TOTAL,
    PROJECT_DIR,
    QUICK,
    Bench,
    Plan,
    extra_settings,
)
from bench.pg import Postgres, external, start_private, stop_private
from tenancy.keyring import Keyring
from tenancy.releases.compile.compiler import compile_release, load_project_dir
from tenancy.releases.model import Release

OUT = Path(__file__).resolve().parent / "out"
BEGAN = time.monotonic()
STEPS: list[tuple[float, str]] = []  # (seconds since start, step): where the time goes


def step(message: str) -> None:
    elapsed = time.monotonic() - BEGAN
    STEPS.append((round(elapsed, 1), message))
    print(f"[bench {elapsed:5.0f}s] {message}", flush=True)


def _bridge_sql(scenario: throughput.Scenario, statements: list[str] | None) -> None:
    """Record what one warm Bridge request ran (None: no server log to read).

    `sameSql`: exactly one statement, and it is the floor's (whitespace aside).
    """
    if statements is None:
        return
    scenario.notes["bridgeStatements"] = statements
    if "sql" in scenario.floor_route:  # S8 has no floor: it must run no statement at all
        floor_sql = " ".join(scenario.floor_route["sql"].split())
        scenario.notes["sameSql"] = statements == [floor_sql]


class Skip(Exception):
    """A scenario whose routes do not answer yet (other work is building them)."""


def _failed(name: str, title: str, exc: BaseException) -> dict[str, Any]:
    status = "skipped" if isinstance(exc, Skip) else "error"
    step(f"{name} {status}: {exc}")
    if status == "error":
        traceback.print_exception(exc)
    return {"title": title, "status": status, "reason": str(exc)[:500]}


def guarded(results: dict[str, Any], name: str, title: str, work: Callable[[], Any]) -> Any:
    """Run one scenario's work; a failure is recorded and the other scenarios still run."""
    try:
        return work()
    except Exception as exc:
        results[name] = _failed(name, title, exc)
        return None


def _floor_config(bench: Bench, scenarios: list[throughput.Scenario]) -> Path:
    tenants: dict[str, str] = {}
    routes: dict[str, Any] = {}
    for scenario in scenarios:
        tenants |= scenario.floor_tenants
        path = orjson.loads(scenario.requests[0][1])["path"]
        routes[path] = scenario.floor_route
    config = {
        "tenants": tenants,
        "routes": routes,
        # The Bridge's per-tenant pool size and statement timeout (defaults unless overridden).
        "poolSize": int(bench.bridge_env().get("STK_POOL_MAX_PER_TENANT", "5")),
        "statementTimeoutMs": int(bench.bridge_env().get("STK_STATEMENT_TIMEOUT_MS", "10000")),
    }
    path = bench.workdir / "floor.json"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


def _checked(bench: Bench, client: Client, scenario: throughput.Scenario) -> throughput.Scenario:
    """The Bridge answers the scenario's request; what one warm request runs is recorded."""
    headers, body = scenario.requests[0]
    statements, why = setup.route_answers(bench, client, orjson.loads(body), headers)
    if why:
        raise Skip(why)
    _bridge_sql(scenario, statements)
    return scenario


def _s2(bench: Bench, client: Client) -> throughput.Scenario:
    user = setup.end_user(bench, client)
    if isinstance(user, str):
        raise Skip(user)
    return _checked(bench, client, throughput.s2(bench, *user))


def throughput_phase(
    bench: Bench, bridge: procs.Server, servers: list[procs.Server], data: dict[str, Any]
) -> None:
    results = data["scenarios"]
    client = Client(bridge.port)
    step("registering the bench projects through the admin API")
    api_key, key_id = setup.register_project(bench, client, "bench")
    setup.register_project(bench, client, "bench-pub")
    logic = Release.load(bench.release.body).logics["items/get"].sql
    logic_sql = logic if isinstance(logic, str) else logic["postgresql"]

    prepare: dict[str, Callable[[], throughput.Scenario]] = {
        "S1": lambda: _checked(bench, client, throughput.s1(bench, api_key, logic_sql)),
        "S2": lambda: _s2(bench, client),
        "S3": lambda: _checked(bench, client, throughput.s3(bench, api_key)),
        "S4": lambda: throughput.s4(bench, bench.fleet[: bench.plan.active], logic_sql),
    }
    runnable = []
    for name, build in prepare.items():
        scenario = guarded(results, name, throughput.TITLES[name], build)
        if scenario is not None:
            runnable.append(scenario)
    storage = guarded(
        results,
        "S8",
        throughput.TITLES["S8"],
        lambda: _checked(bench, client, throughput.s8(api_key, key_id)),
    )
    client.close()
    if runnable:
        floor_phase(bench, bridge, servers, runnable, results)
    s1 = next((s for s in runnable if s.name == "S1"), None)
    if storage is None or s1 is None:
        if storage is not None:
            results["S8"] = _failed("S8", storage.title, Skip("S1 did not run: no baseline"))
        return
    step(f"S8: {storage.title}, against S1 on the same Bridge")

    def s8() -> None:
        results["S8"] = throughput.measure_against(bench, storage, s1, bridge)

    guarded(results, "S8", storage.title, s8)


def floor_phase(
    bench: Bench,
    bridge: procs.Server,
    servers: list[procs.Server],
    runnable: list[throughput.Scenario],
    results: dict[str, Any],
) -> None:
    step("starting the floor")
    floor = procs.floor(_floor_config(bench, runnable), bench.server_cpu, bench.workdir)
    servers.append(floor)
    for scenario in runnable:
        step(f"{scenario.name}: {scenario.title}")

        def measure(scenario: throughput.Scenario = scenario) -> None:
            throughput.probe(scenario, bridge, floor)
            results[scenario.name] = throughput.measure(bench, scenario, bridge, floor)

        guarded(results, scenario.name, scenario.title, measure)
    floor.stop()


def run_all(bench: Bench, servers: list[procs.Server], data: dict[str, Any]) -> None:
    plan, results = bench.plan, data["scenarios"]
    keyring = Keyring.parse(bench.master_keys)
    keyed = set(range(memory.FIRST_USE + max(plan.active, plan.memory_active)))
    keyed |= set(range(plan.fleet - plan.cold, plan.fleet))
    memory_set = slice(0, memory.FIRST_USE + plan.memory_active)

    points: list[dict[str, Any]] = []

    def s6(tag: str, tenants: list[fleet.Tenant]) -> None:
        if "S6" in results:
            return  # an earlier point failed: the series is incomplete
        step(f"S6: resident memory with {tag} registered tenants")

        def work() -> dict[str, Any]:
            return memory.measure(bench, tag, tenants, plan.memory_active)

        point = guarded(results, "S6", memory.TITLE, work)
        if point is not None:
            points.append(point)

    s6("0", [])

    def grow(stop: int, keys: set[int]) -> None:
        began = time.monotonic()
        start = len(bench.fleet)
        bench.fleet += asyncio.run(
            fleet.register(
                bench.registry_url,
                bench.kv_url,
                keyring,
                bench.release,
                range(start, stop),
                bench.fleet_dbs,
                keys,
                HOST_SUFFIX,
            )
        )
        step(f"registered tenants {start}..{stop - 1} in {time.monotonic() - began:.1f} s")

    grow(plan.fleet, keyed)
    s6(f"{plan.fleet:,}", bench.fleet[memory_set])

    step("starting the main Bridge, and replica B for S7 (idle until then, on the load CPU)")
    bridge = procs.launch_bridge(bench.bridge_env(), bench.server_cpu, bench.workdir, "main")
    replica = procs.launch_bridge(bench.bridge_env(), bench.load_cpu, bench.workdir, "replica-b")
    servers += [bridge, replica]
    procs.ready(bridge)
    procs.ready(replica)
    throughput_phase(bench, bridge, servers, data)

    step(f"S5: cold first request over {plan.cold} tenants")

    def s5() -> None:
        results["S5"] = cold.measure(bridge, bench.fleet[plan.fleet - plan.cold : plan.fleet])
        print(f"  S5 cold {results['S5']['cold']}  warm {results['S5']['warm']}")

    guarded(results, "S5", cold.TITLE, s5)

    step("S7: publish → first request with the new release (on replicas A and B)")

    def s7() -> None:
        results["S7"] = publish.measure(bench, bridge, replica, "bench-pub", plan.publishes)
        print(f"  S7 same {results['S7']['sameReplica']}  other {results['S7']['otherReplica']}")

    guarded(results, "S7", publish.TITLE, s7)
    replica.stop()
    bridge.stop()

    grow(plan.fleet_max, set())
    s6(f"{plan.fleet_max:,}", bench.fleet[memory_set])
    if "S6" not in results:
        results["S6"] = memory.summarize(points)


def clean_redis(url: str, prefix: str) -> None:
    """Delete every key under `prefix`: what a bench run wrote to the shared Redis."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (< 2 minutes)")
    args = parser.parse_args(argv)
    plan: Plan = QUICK if args.quick else FULL
    procs.require_tools()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = OUT / f"run-{stamp}"
    workdir.mkdir(parents=True)
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("STK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    prefix = f"stkbench:{uuid.uuid4().hex[:12]}:"
    redis.Redis.from_url(redis_url).ping()
    pg_url = os.environ.get("BENCH_PG_URL")
    step("PostgreSQL: " + ("BENCH_PG_URL" if pg_url else "starting a private cluster"))
    pg: Postgres = asyncio.run(external(pg_url)) if pg_url else start_private()
    servers: list[procs.Server] = []
    command = "make bench QUICK=1" if args.quick else "make bench"
    data: dict[str, Any] = {
        "mode": plan.name,
        "command": command,
        "plan": plan.__dict__,
        "bridgeSettings": {"STK_POOL_MAX_TOTAL": str(POOL_MAX_TOTAL), **extra_settings()},
        "scenarios": {},
        "notes": [],
    }
    try:
        data["machine"] = report.machine(pg, redis_url, procs.cpu_pair())
        step(f"server logs in {workdir.relative_to(procs.REPO)} (removed after a successful run)")
        step("creating and seeding databases")
        registry, app, fleet_dbs = asyncio.run(setup.databases(pg))
        files = load_project_dir(PROJECT_DIR)
        bench = Bench(
            plan=plan,
            workdir=workdir,
            pg=pg,
            kv_url=f"{redis_url}?prefix={prefix}",
            master_keys=Keyring.generate_entry("bench"),
            registry_db=registry,
            app_db=app,
            fleet_dbs=[pg.url(name) for name in fleet_dbs],
            files=files,
            release=compile_release(files, connections={"main"}),
        )
        setup.migrate(bench)
        run_all(bench, servers, data)
    finally:
        step("cleaning up")
        for server in servers:
            server.stop()
        try:
            asyncio.run(pg.drop_all())
        finally:
            stop_private(pg)
            clean_redis(redis_url, prefix)
    data["machine"]["loadavgEnd"] = report.loadavg()
    data["elapsedSeconds"] = round(time.monotonic() - BEGAN, 1)
    data["steps"] = STEPS
    data["notes"] += _notes(data)
    out = OUT / f"bench-{stamp}.json"
    out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    (OUT / "latest.json").write_bytes(out.read_bytes())
    report.write_results(data)
    if os.environ.get("BENCH_KEEP") != "1":
        shutil.rmtree(workdir)  # server logs (the Bridge's access log is large); kept on failure
    step(f"done in {data['elapsedSeconds']:.0f} s: {out.relative_to(procs.REPO)}, bench/RESULTS.md")
    failed = [name for name, result in data["scenarios"].items() if result["status"] == "error"]
    if failed:
        raise SystemExit(f"bench: {', '.join(sorted(failed))} failed (see above)")


def _notes(data: dict[str, Any]) -> list[str]:
    extra = ", ".join(f"{k}={v}" for k, v in extra_settings().items())
    notes = [
        f"Bridge settings: STK_POOL_MAX_TOTAL={POOL_MAX_TOTAL} (S4's 100 warm pools x 5 "
        "connections do not fit the default budget of 400)"
        + (f", and from BENCH_STK_*: {extra}" if extra else "")
        + "; everything else default. Its JSON access log goes to a file.",
        "The floor runs the Bridge's SQL: for S1/S4 taken from the compiled release, for S2/S3 "
        "as written in bench/throughput.py. Each run reads from the PostgreSQL log every "
        "statement one warm Bridge request runs (`bridgeStatements` in the JSON).",
    ]
    for name in ("S1", "S2", "S3", "S8"):
        result = data["scenarios"].get(name) or {}
        ran = result.get("notes", {}).get("bridgeStatements")
        if ran is None:
            continue
        if name == "S8":
            notes.append(
                "S8: one warm upload_sign runs no SQL statement (registry included)."
                if not ran
                else f"S8: **one warm upload_sign ran SQL**: {ran}"
            )
        elif result["notes"]["sameSql"]:
            notes.append(f"{name}: one warm Bridge request runs one statement, the floor's.")
        else:
            notes.append(f"{name}: **the Bridge's statements differ from the floor's**: {ran}")
    return notes


if __name__ == "__main__":
    main()
