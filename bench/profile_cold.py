"""S5 in process, by stage: where a cold tenant's first request waits.

    .venv/bin/python -m bench.profile_cold [--tenants 40] [--profile]

Registers `--tenants` projects (bench project, one seeded PostgreSQL database) on a PostgreSQL
registry with Redis as the KV store, as `stk-bridge serve` runs in production, then starts a
fresh app on the same registry and store and sends each tenant its first `POST /call` (S1's
logic, API key), one at a time. Prints the request's time and each stage's (the directory's
lookups, the release, the tenant connection), p50 and mean, from timing wrappers put around
those calls for this run; `--profile` adds cProfile's own time and calls per file
(`bench.profile_call.by_file`). Figures, not assertions (`bench/RESULTS.md`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import pstats
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.profile_call import (
    PG,
    S1_BODY,
    by_file,
    database,
    one,
    register,
    request_headers,
    serving,
)
from bench.run import clean_redis
from tenancy.directory import Directory
from tenancy.engines.postgresql import PgConnection
from tenancy.keyring import Keyring

REDIS = os.environ.get("STK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STAGES: dict[str, list[float]] = defaultdict(list)


def timed(owner: Any, name: str) -> None:
    """Record every call of `owner.name` (a coroutine function) under that name."""
    real: Callable[..., Awaitable[Any]] = getattr(owner, name)

    @functools.wraps(real)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await real(*args, **kwargs)
        finally:
            STAGES[f"{owner.__name__}.{name}"].append(time.perf_counter() - started)

    setattr(owner, name, wrapper)


async def main(tenants: int, profile: bool) -> None:
    registry = f"stk_cold_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{registry}"')
    prefix = f"stkcold:{uuid.uuid4().hex[:8]}:"
    settings = {
        "registry_url": PG.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://")
        + "/"
        + registry,
        "kv_url": f"{REDIS}?prefix={prefix}",
    }
    keyring = Keyring.parse(Keyring.generate_entry("p"))  # both apps open the same secrets
    try:
        async with database() as url:
            keys = {}
            async with serving(keyring, **settings) as app:
                for n in range(tenants + 1):
                    project = f"c{n:04d}"
                    keys[project] = (await register(app, url, project=project))[0]
            for owner, name in (
                (Directory, "project"),
                (Directory, "api_key"),
                (Directory, "release"),
                (Directory, "connection"),
                (PgConnection, "open"),
            ):
                timed(owner, name)
            async with serving(keyring, **settings) as app:
                first, *cold = keys.items()
                body = S1_BODY
                await one(
                    app,
                    request_headers((b"x-santokit-api-key", first[1].encode()), body, first[0]),
                    body,
                )
                STAGES.clear()
                profiler = cProfile.Profile() if profile else None
                whole = []
                for project, key in cold:
                    headers = request_headers((b"x-santokit-api-key", key.encode()), body, project)
                    started = time.perf_counter()
                    if profiler:
                        profiler.enable()
                    await one(app, headers, body)
                    if profiler:
                        profiler.disable()
                    whole.append(time.perf_counter() - started)
        print(f"{len(whole)} cold first requests, ms:")
        for name, values in {"request": whole, **STAGES}.items():
            p50, mean = statistics.median(values) * 1e3, statistics.mean(values) * 1e3
            print(f"  {name:22s} p50 {p50:6.2f}  mean {mean:6.2f}")
        if profiler:
            by_file(pstats.Stats(profiler), len(whole))
    finally:
        await admin.execute(f'DROP DATABASE "{registry}" WITH (FORCE)')
        await admin.close()
        clean_redis(REDIS, prefix)  # the tenants' manifests and bundles


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.tenants, args.profile))
