"""wrk runs: fixed concurrency, pinned to the load-generator CPU, figures parsed from one line.

Each run also records the CPU share wrk used (from the kernel's accounting of the reaped child)
and the server's, so a report shows the load generator was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procs import Server

LUA = Path(__file__).resolve().parent / "wrk" / "requests.lua"
THREADS = 1


def _lua_string(text: str) -> str:
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in '"\\' or code < 32 or code > 126:
            out.extend(f"\\{b}" for b in char.encode())
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def write_requests(path: Path, requests: list[tuple[dict[str, str], str]]) -> Path:
    """A Lua file returning `{ {headers = {...}, body = "..."}, ... }` for requests.lua."""
    lines = ["return {"]
    for headers, body in requests:
        fields = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
        lines.append(f"  {{headers = {{{fields}}}, body = {_lua_string(body)}}},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Run:
    server: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: dict[str, int]
    server_cpu: float  # share of one core the server used during the run
    cpu_us_per_request: float  # server CPU time per request: steadier than req/s when shared
    loadgen_cpu: float  # share of one core wrk used

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def run_wrk(server: Server, requests_file: Path, seconds: int, connections: int, cpu: int) -> Run:
    args = ["taskset", "-c", str(cpu), "wrk", f"-t{THREADS}", f"-c{connections}"]
    args += [f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA)]
    args.append(f"http://127.0.0.1:{server.port}/call")
    env = {**os.environ, "BENCH_REQUESTS": str(requests_file)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before, started = server.cpu_seconds(), time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - started
    server_seconds = server.cpu_seconds() - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    data = json.loads(line.removeprefix("BENCH_RESULT "))
    requests = max(data["requests"], 1)
    return Run(
        server=server.name,
        rps=round(data["requests"] / (data["duration_us"] / 1e6), 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        requests=data["requests"],
        errors=data["errors"],
        server_cpu=round(server_seconds / wall, 3),
        cpu_us_per_request=round(server_seconds / requests * 1e6, 1),
        loadgen_cpu=round(wrk_cpu, 3),
    )
