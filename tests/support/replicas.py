"""A deployment under fault: two `stk-bridge serve` replicas as real processes, their own
`redis-server`, TCP proxies the test controls in front of the registry, Redis and any tenant
database, and a load driver that records every request.

Used by the fault suite (`tests/faults/`) and its figures (`python -m bench.faults`). The proxies
run on an event loop in a background thread, so the replicas' traffic keeps flowing while the
test blocks (starting processes, sync HTTP) and while the load driver runs its own loop.
Everything started here is stopped in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from support.bridge import ADMIN_TOKEN
from support.faults import TcpProxy
from support.processes import Server, free_port, master_keys, start, stk_env, stop, wait_ready
from support.services import asyncpg_url, pg_database
from support.world import demo_files, seed_postgresql

T = TypeVar("T")
HOST_SUFFIX = "api.localhost"
REQUEST_TIMEOUT_S = 15.0  # the driver's own cap: a request that hangs longer is a failure
# Start-up only (imports, migrations): generous, a shared CI machine may be saturated.
START_TIMEOUT_S = 120.0

# The fault suite's settings: shorter timeouts than the defaults so a phase stays short, and a
# small tenant budget (the PostgreSQL server is shared, and fairness must show under pressure).
FAULT_SETTINGS = {
    "registry_connect_timeout_ms": "1000",
    "registry_command_timeout_ms": "1500",
    "registry_pool_timeout_ms": "1000",
    "tenant_connect_timeout_ms": "1000",
    "pool_timeout_ms": "1000",
    "pool_max_total": "12",
    "pool_max_per_tenant": "3",
    "log_level": "warning",
}
# What those timeouts imply for one request (a ping plus one connect, or one command: 1.5 s),
# with a wide margin: CI machines are shared (a fault-free baseline once had a p99 of 3.1 s at a
# load average of 13 on 2 cores), and the proxies and the load driver share this process. A
# bound, never a figure (figures: `python -m bench.faults`). Without the bounds the same
# requests waited 29-60 s (issue 8).
BOUND_S = 8.0


class Background:
    """An event loop in a daemon thread, for the proxies and async set-up steps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def proxy(self, host: str, port: int) -> TcpProxy:
        """A listening proxy in `pass` mode in front of host:port."""
        proxy = TcpProxy(host, port)
        self.run(proxy.accept())
        return proxy

    def refuse(self, proxy: TcpProxy) -> None:
        self.run(proxy.refuse())

    def blackhole(self, proxy: TcpProxy) -> None:
        proxy.mode = "blackhole"

    def restore(self, proxy: TcpProxy) -> None:
        self.run(proxy.restore())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class RedisServer:
    """A `redis-server` of the test's own (never the shared one): it may be killed, paused
    (SIGSTOP) and restarted on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                ["redis-server", *args, "no", "--dir", str(self.workdir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not answer in {timeout}s")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if sig != signal.SIGKILL:
                self.proc.send_signal(signal.SIGCONT)  # a paused server cannot exit otherwise
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@dataclass(frozen=True)
class Tenant:
    project: str
    api_key: str
    proxy: TcpProxy | None  # in front of its database, when it has its own


@dataclass
class Deployment:
    background: Background
    workdir: Path
    env: dict[str, str]
    redis: RedisServer
    registry: TcpProxy  # in front of the registry PostgreSQL
    redis_proxy: TcpProxy  # in front of `redis` (KV store, invalidation, rate limits)
    tenant_db: str  # the seeded PostgreSQL database tenants share (plain URL)
    replicas: list[Server] = field(default_factory=list)
    tenants: dict[str, Tenant] = field(default_factory=dict)

    def start_replica(self, index: int | None = None) -> Server:
        """Start a replica (again, on its old port, when `index` names one) and wait for it."""
        port = self.replicas[index].port if index is not None else free_port()
        server = start(["serve"], self.env, self.workdir, port)
        wait_ready(server, timeout=START_TIMEOUT_S)
        if index is None:
            self.replicas.append(server)
        else:
            self.replicas[index] = server
        return server

    def add_tenant(
        self, project: str, *, own_proxy: bool = False, logics: dict[str, str] | None = None
    ) -> Tenant:
        """A project with env `prod` on the shared tenant database (through a proxy of its own
        when `own_proxy`), the demo release plus public `logics`, and an admin API key."""
        proxy = None
        url = self.tenant_db
        if own_proxy:
            parts = urlsplit(url)
            proxy = self.background.proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
            url = url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
        admin = self.replicas[0].admin
        base = f"/projects/{project}/envs/prod"
        for method, path, body, status in (
            ("POST", "/projects", {"id": project, "envs": ["prod"]}, 201),
            ("PUT", f"{base}/connections/main", {"url": url}, 200),
            ("POST", f"{base}/releases", {"files": demo_files(**(logics or {}))}, 201),
        ):
            r = admin(method, path, json=body)
            assert r.status_code == status, (path, r.text)
        r = admin("POST", f"{base}/api-keys", json={"name": "load", "roles": ["admin"]})
        assert r.status_code == 201, r.text
        tenant = Tenant(project, r.json()["apiKey"], proxy)
        self.tenants[project] = tenant
        return tenant


@contextmanager
def deployment(workdir: Path, replicas: int = 2, **settings: str) -> Iterator[Deployment]:
    """Registry (a fresh PostgreSQL database) and Redis behind proxies, a seeded tenant
    database, and `replicas` Bridge processes started together; `settings` are STK_* values."""
    background = Background()
    stack = AsyncExitStack()
    redis = RedisServer(workdir)
    dep: Deployment | None = None
    try:
        registry_url = background.run(stack.enter_async_context(pg_database()))
        tenant_db = background.run(stack.enter_async_context(pg_database()))
        background.run(seed_postgresql(tenant_db))
        redis.start()
        parts = urlsplit(registry_url)
        registry = background.proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        redis_proxy = background.proxy("127.0.0.1", redis.port)
        through = registry_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{registry.port}")
        env = stk_env(
            **{
                "registry_url": asyncpg_url(through),
                "kv_url": f"redis://127.0.0.1:{redis_proxy.port}/0",
                "master_keys": master_keys(),
                "admin_tokens": ADMIN_TOKEN,
                "host_suffix": HOST_SUFFIX,
                "data_dir": str(workdir / "unused"),
                **settings,
            }
        )
        dep = Deployment(background, workdir, env, redis, registry, redis_proxy, tenant_db)
        started = [start(["serve"], env, workdir, free_port()) for _ in range(replicas)]
        dep.replicas.extend(started)
        for server in started:
            wait_ready(server, timeout=START_TIMEOUT_S)
        yield dep
    finally:
        if dep is not None:
            for server in dep.replicas:
                stop(server)
        redis.stop()
        background.run(stack.aclose())
        background.close()


# --- load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One kind of request the driver sends: `label` groups its samples."""

    label: str
    replica: Server
    project: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None

    def request(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        headers = {"Host": f"{self.project}.{HOST_SUFFIX}"}
        if self.api_key:
            headers["X-Santokit-Api-Key"] = self.api_key
        return f"{self.replica.base}/call", {"path": self.path, "params": self.params}, headers


@dataclass(frozen=True, slots=True)
class Sample:
    label: str
    status: int  # 0: no answer (transport error or the driver's timeout)
    seconds: float


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)

    def of(self, *labels: str) -> list[Sample]:
        return [s for s in self.samples if not labels or s.label in labels]

    def success_rate(self, *labels: str) -> float:
        chosen = self.of(*labels)
        assert chosen, f"no samples for {labels}"
        return sum(s.status == 200 for s in chosen) / len(chosen)

    def statuses(self, *labels: str) -> dict[int, int]:
        counts: dict[int, int] = {}
        for s in self.of(*labels):
            counts[s.status] = counts.get(s.status, 0) + 1
        return counts

    def max_seconds(self, *labels: str) -> float:
        return max(s.seconds for s in self.of(*labels))

    def percentile(self, p: float, *labels: str) -> float:
        ordered = sorted(s.seconds for s in self.of(*labels))
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self, *labels: str) -> str:
        return (
            f"n={len(self.of(*labels))} ok={self.success_rate(*labels):.1%} "
            f"p50={self.percentile(50, *labels):.3f}s p99={self.percentile(99, *labels):.3f}s "
            f"max={self.max_seconds(*labels):.3f}s statuses={self.statuses(*labels)}"
        )


async def drive(targets: Sequence[Target], seconds: float, concurrency: int) -> Results:
    """`concurrency` workers per target send requests back to back for `seconds`."""
    results = Results()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency * len(targets) + 4)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def worker(target: Target) -> None:
            url, body, headers = target.request()
            while time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    status = (await client.post(url, json=body, headers=headers)).status_code
                except httpx.HTTPError:
                    status = 0
                results.samples.append(Sample(target.label, status, time.monotonic() - began))

        await asyncio.gather(*(worker(t) for t in targets for _ in range(concurrency)))
    return results


def load(targets: Sequence[Target], seconds: float, concurrency: int = 2) -> Results:
    return asyncio.run(drive(targets, seconds, concurrency))


def warm(targets: Sequence[Target]) -> None:
    """One successful request per target, so its tenant is cached on its replica."""
    for target in targets:
        url, body, headers = target.request()
        r = httpx.post(url, json=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
        assert r.status_code == 200, (target, r.text)
