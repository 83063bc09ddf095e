"""What every scenario shares: the plan (full or quick), services, keys and the bench project."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.fleet import Tenant
from bench.pg import Postgres
from tenancy.releases.compile.compiler import CompiledRelease

PROJECT_DIR = Path(__file__).resolve().parent / "project"
HOST_SUFFIX = "bench.localhost"
ENV = "prod"
# The one Bridge setting changed from its defaults: the process-wide connection budget must hold
# S4's 100 warm pools (100 x STK_POOL_MAX_PER_TENANT=5); the default 200 would evict them.
POOL_MAX_TOTAL = 1000


@dataclass(frozen=True)
class Plan:
    name: str
    warmup_s: int  # wrk warm-up per server per scenario (pools, caches, prepared statements)
    seconds: int  # each measured wrk run
    reps: int  # measured runs per server, Bridge and floor alternating
    publishes: int  # S7 samples
    connections: int = 32
    fleet: int = 1000  # registered tenants during S1-S5 and S7; S6's middle point
    fleet_max: int = 10_000  # S6's last point (S6 also measures at 0)
    active: int = 100  # S4 tenants receiving traffic
    memory_active: int = 100  # S6 tenants made active
    cold: int = 200  # S5 tenants


# Five pairs of 8 s rather than three of 12 s (issue 12): on a shared machine one disturbed run
# in two of three pairs moved a ratio's median by 10 %; the median of five needs three.
FULL = Plan("full", warmup_s=5, seconds=8, reps=5, publishes=20)
QUICK = Plan("quick", warmup_s=1, seconds=2, reps=3, publishes=5, memory_active=50, cold=100)


@dataclass
class Bench:
    plan: Plan
    workdir: Path
    pg: Postgres
    kv_url: str
    master_keys: str
    registry_db: str
    app_db: str
    fleet_dbs: list[str]
    files: dict[str, str]
    release: CompiledRelease
    cpus: tuple[int, int] = field(default_factory=procs.cpu_pair)
    admin_token: str = field(default_factory=lambda: "bench-admin-" + secrets.token_hex(16))
    fleet: list[Tenant] = field(default_factory=list)

    @property
    def server_cpu(self) -> int:
        return self.cpus[0]

    @property
    def load_cpu(self) -> int:
        return self.cpus[1]

    @property
    def registry_url(self) -> str:
        return self.pg.url(self.registry_db).replace("postgresql://", "postgresql+asyncpg://", 1)

    def bridge_env(self) -> dict[str, str]:
        """The Bridge's STK_* settings; `BENCH_STK_<NAME>=v` adds or overrides STK_<NAME>."""
        env = procs.stk_env(
            registry_url=self.registry_url,
            kv_url=self.kv_url,
            master_keys=self.master_keys,
            admin_tokens=self.admin_token,
            host_suffix=HOST_SUFFIX,
            pool_max_total=str(POOL_MAX_TOTAL),
            auto_migrate="false",
            data_dir=str(self.workdir / "data"),
        )
        return env | extra_settings()

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def registered(self) -> int:
        return int(asyncio.run(self.pg.fetchval("SELECT count(*) FROM projects", self.registry_db)))


def extra_settings() -> dict[str, str]:
    """Bridge settings given as BENCH_STK_<NAME> (to try a setting without editing the bench)."""
    return {
        name.removeprefix("BENCH_"): value
        for name, value in os.environ.items()
        if name.startswith("BENCH_STK_")
    }


def host(project: str) -> str:
    return f"{project}.{HOST_SUFFIX}"
