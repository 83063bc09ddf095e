"""What a rate limit adds to one S1 request, end to end, against the same tenant with its limit
skipped (issue 12: each feature at most 3 % of S1's CPU per request).

    .venv/bin/python -m bench.limit_cost [--rounds 100] [--batch 200] [--bytecodes]
    .venv/bin/python -m bench.limit_cost --instructions [--repeats 5] | --steps 20000

`bench.features`' tenants in one app (in-process counting, no Redis): `shop` (S1, no limit),
`plain` (a second unlimited tenant: the control), `keyed` (a per-key limit), `every` (tenant +
key + address limits), and `keyed` once more with `Limiters.admit` answering None at once
(`keyed, skipped`: the same tenant, release and caches, only the limiter and its headers
missing). Each round runs a batch of each in a new random order; figures are process CPU time
per request, medians of the per-round differences. Against the skipped twin the difference is
the limiter's alone: a second tenant differs from `shop` by more than the limit costs.

`--bytecodes` counts instead, deterministically: Python calls (`sys.setprofile`, Python and C)
and bytecodes executed (`sys.settrace` opcode events) per request. In a request each bytecode of
the limiter costs about what an average one of S1's does, so this is the steadiest measure of
a change on a shared machine.

`--instructions` counts what the issue asks about, S1's CPU as served: machine instructions per
request (valgrind's callgrind, the same count whatever else the machine does) of the same world
behind a real uvicorn server (the protocol and loop `stk-bridge serve` uses) under
`--connections` keep-alive clients, as `make bench`'s wrk sends them. It runs the world twice
(the limiter real, then skipped), counting only while a batch of one tenant's requests is in
flight; S1's own count is then the whole request: HTTP parsing, event loop, driver and all.

`--steps N` counts the limit's own two steps alone (the admission's rate step and the
`RateLimit` headers, N loops for one per-key caller, no server), under callgrind: for a change to
the limiter itself. Figures, not assertions: `bench/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from bench.features import NEVER, world
from bench.load import run_wrk, write_requests
from bench.procs import REPO, Server, cpu_pair, free_port, wait_ready
from bench.profile_call import S1_BODY, database, one, serving
from bridge.guard import server_options
from bridge.middleware import rate_headers
from tenancy.limits import Buckets, CallerLimits, Limiters, Limits, RateState
from tenancy.principal import Principal, Tenant

SKIPPED = "keyed, skipped"
# (name, tenant): what each batch runs.
CALLS = [
    ("shop", "shop"),
    ("plain", "plain"),
    ("keyed", "keyed"),
    (SKIPPED, "keyed"),
    ("every", "every"),
]
PAIRS = [
    ("plain", "shop", "control: a second unlimited tenant"),
    (SKIPPED, "shop", "the limited tenant, limit skipped"),
    ("keyed", SKIPPED, "per-key limit, against the same tenant skipped"),
    ("every", SKIPPED, "tenant + key + address, against keyed skipped"),
]


def skipped(*args: Any) -> None:
    """`Limiters.admit` skipped: what it answers an unlimited tenant."""
    return None


def skippable(app: Any) -> Callable[[bool], None]:
    """Switch the app's `Limiters.admit` between itself and `skipped`. Neither side pays a
    wrapper: a wrapper's call of the real limiter was counted as the limiter's (6 bytecodes a
    request)."""
    limits = app.runtime.limits

    def set_skip(value: bool) -> None:
        if value:
            limits.admit = skipped
        else:
            vars(limits).pop("admit", None)

    return set_skip


async def timed(rounds: int, batch: int) -> None:
    async with database() as url, serving() as app:
        tenants = await world(app, url)
        set_skip = skippable(app)
        spent: dict[str, list[float]] = {name: [] for name, _ in CALLS}
        shuffle = random.Random(12).shuffle
        for _ in range(rounds):
            order = CALLS[:]
            shuffle(order)
            for name, tenant in order:
                set_skip(name == SKIPPED)
                headers = tenants.headers[tenant]
                began = time.process_time()
                for _ in range(batch):
                    await one(app, headers, S1_BODY)
                spent[name].append((time.process_time() - began) / batch * 1e6)
        s1 = statistics.median(spent["shop"])
        print(f"S1 {s1:.1f} µs/request; {rounds} rounds, batches of {batch}, random order")
        for name, base, what in PAIRS:
            added = [x - y for x, y in zip(spent[name], spent[base], strict=True)]
            low, _, high = statistics.quantiles(added, n=4)
            middle = statistics.median(added)
            print(
                f"{name:>14} - {base:<14} {middle:+6.1f} µs {100 * middle / s1:+5.1f} % of S1"
                f"  (quartiles {low:+.1f} … {high:+.1f})  {what}"
            )


async def counted(requests: int) -> None:
    async with database() as url, serving() as app:
        tenants = await world(app, url)
        set_skip = skippable(app)
        found: dict[str, tuple[float, float]] = {}
        for name, tenant in CALLS:
            set_skip(name == SKIPPED)
            headers = tenants.headers[tenant]
            for _ in range(50):  # warm
                await one(app, headers, S1_BODY)
            counts = []
            for install in (_calls, _bytecodes):
                each = []
                for _ in range(requests):
                    seen = [0]
                    install(seen)
                    try:
                        await one(app, headers, S1_BODY)
                    finally:
                        sys.setprofile(None)
                        sys.settrace(None)
                    each.append(seen[0])
                counts.append(statistics.median(each))
            found[name] = (counts[0], counts[1])
        skipped = found[SKIPPED]
        print(f"the median request of {requests} each (against {SKIPPED!r}):")
        for name, (calls, codes) in found.items():
            print(
                f"{name:>14}  calls {calls:6.1f} ({calls - skipped[0]:+5.1f})"
                f"  bytecodes {codes:7.1f} ({codes - skipped[1]:+6.1f})"
            )


# Per request, the median: a request now and then does more (the API key's last use written
# once a minute, a buffer of request ids refilled), which a mean would spread over the others.
def _calls(seen: list[int]) -> None:
    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            seen[0] += 1

    sys.setprofile(profile)


def _bytecodes(seen: list[int]) -> None:
    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            seen[0] += 1
        return local

    def start(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    sys.settrace(start)


# Counted per served request, each `--repeats` times in turn (the median kept): the limiter real,
# then skipped. The app's timers (the outbox drain, the metrics sync, the pool janitor) run every
# few seconds of wall time and a batch under callgrind takes about ten, so some batches hold one
# at some fifty times its served weight per request (535 k against 548 k for the same tenant);
# the median of five leaves those out. Between processes the same tenant moves by ±2 k.
SERVED = ["shop", "plain", "keyed", "every"]
SERVED_SKIPPED = ["shop", "keyed"]
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


async def served(ready: Path, port: int, skip: bool) -> None:
    """The world behind uvicorn with `stk-bridge serve`'s protocol (the loop is the runner's):
    each tenant's raw S1 request goes to `ready`, then it listens until SIGTERM."""
    # Usage counters and keys' last use are written every `usage_flush_seconds`, whatever the
    # load: off here, so no count holds a registry write, and S1's count is the smaller.
    async with database() as url, serving(usage_flush_seconds=86400) as app:
        tenants = await world(app, url)
        skippable(app)(skip)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",  # `serving` started the app
            log_config=None,
            access_log=False,
            proxy_headers=False,
            **server_options(),
        )
        sent = {
            name: [(k.decode(), v.decode()) for k, v in h] for name, h in tenants.headers.items()
        }
        written = ready.with_suffix(".part")
        await asyncio.to_thread(written.write_text, json.dumps(sent))
        written.rename(ready)  # whole, for the driver that waits for it
        # uvicorn raises a SIGTERM again once it has shut down, with the handler it found: a
        # no-op one lets this process drop its database before it ends.
        signal.signal(signal.SIGTERM, lambda *_: None)
        await uvicorn.Server(config).serve()


def _raw(headers: list[list[str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"POST /call HTTP/1.1\r\n{lines}\r\n".encode() + S1_BODY


async def _send(port: int, request: bytes, count: int, connections: int) -> None:
    """`count` copies of `request` over `connections` keep-alive connections; each must be a 200
    with a Content-Length body."""
    left = [count]

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                if not head.startswith(b"HTTP/1.1 200 ") or length is None:
                    raise SystemExit(f"bench: unexpected answer {head[:200]!r}")
                await reader.readexactly(int(length[1]))
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))


def counted_served(requests: int, connections: int, repeats: int, keep: Path | None) -> None:
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise SystemExit("bench: valgrind not found; install with `apt-get install -y valgrind`")
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for skip in (False, True):
            for name, each in _count_one(
                Path(work), valgrind, control, skip, requests, connections, repeats, keep
            ):
                found.setdefault(SKIPPED if skip and name == "keyed" else name, []).append(each)
        user = _user_share(Path(work), connections)
    s1 = statistics.median(found["shop"])
    print(f"instructions per served request, {requests} per count, {connections} connections:")
    for name, counts in found.items():
        print(f"{name:>14}  {'  '.join(f'{c:11,.0f}' for c in counts)}")
    print(
        f"S1 under wrk, not counted: {100 * user:.0f} % of its CPU in user space (the rest, the"
        " kernel's, has no instructions here): a share of S1's CPU is the share of its"
        " instructions times that"
    )
    lines = [(name, base, what) for name, base, what in PAIRS if "every" not in (name, base)]
    lines.append(("every", "keyed", "address and tenant limits on top of the key's"))
    for name, base, what in lines:
        added = statistics.median(found[name]) - statistics.median(found[base])
        print(
            f"{name:>14} - {base:<14} {added:+8,.0f}  {100 * added / s1:+5.2f} % of S1's"
            f" instructions, {100 * user * added / s1:+5.2f} % of its CPU  {what}"
        )


async def steps(n: int, skip: bool) -> None:
    """The admission's rate step and the middleware's headers, `n` times for one caller with a
    per-key limit (in process, no Redis), with `Limiters.admit` real or answering None."""
    limiters = Limiters(None, max_concurrency=2)
    tenant, caller = Tenant("shop", "prod"), CallerLimits(per_api_key=NEVER)
    key = Principal("api_key", "k1")
    project = Limits()
    admit = skipped if skip else limiters.admit
    base = [(b"content-type", b"application/json"), (b"content-length", b"57")]
    for _ in range(n + 3):  # as `calls.admit`, then `send_wrapper`
        rate: RateState | Buckets | None = admit(tenant, project, caller, key, "203.0.113.7")
        headers = [*base, (b"x-request-id", b"01JD0000000000000000000000")]
        if rate is not None:
            assert not isinstance(rate, Buckets)  # no Redis: always counted here
            if rate[2]:
                raise SystemExit("bench: refused")
            headers += rate_headers(rate)
    await limiters.close()


def counted_steps(n: int) -> None:
    """Callgrind over `steps` run with 0 and `n` loops, real and skipped: per loop, the two
    steps' instructions without a server, a pool or the rest of a request around them."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("bench: valgrind not found; install with `apt-get install -y valgrind`")
    found = {}
    for skip in (False, True):
        totals = []
        for loops in (0, n):
            args = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
            args += ["-m", "bench.limit_cost", "--inner", "--steps", str(loops)]
            args += ["--skip"] if skip else []
            env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
            done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
            collected = re.search(r"Collected : (\d+)", done.stderr)
            assert collected is not None, done.stderr
            totals.append(int(collected[1]))
        found[skip] = (totals[1] - totals[0]) / n
    print(f"admission's rate step + headers, per loop of {n}: limiter real {found[False]:,.0f},")
    print(f"  skipped {found[True]:,.0f}: the limit adds {found[False] - found[True]:+,.0f}")


@contextlib.contextmanager
def _world_process(
    work: Path, tag: str, prefix: list[str], skip: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], int, dict[str, bytes]]]:
    """`served` in a process of its own, run under `prefix` (valgrind, taskset): the process,
    its port and each tenant's raw S1 request, once it listens."""
    ready, port = work / f"ready-{tag}", free_port()
    args = [*prefix, sys.executable, "-m", "bench.limit_cost", "--serve", str(ready)]
    args += ["--port", str(port), *(["--skip"] if skip else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
    with (work / f"server-{tag}.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 900
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: the served world did not start: {log.name}")
                time.sleep(0.5)
            sent = json.loads(ready.read_text())
            wait_ready(Server(f"world-{tag}", proc, port, Path(log.name)))
            yield proc, port, {name: _raw(headers) for name, headers in sent.items()}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


def _count_one(
    work: Path,
    valgrind: str,
    control: str,
    skip: bool,
    requests: int,
    connections: int,
    repeats: int,
    keep: Path | None,
) -> list[tuple[str, float]]:
    """One served world under callgrind, counting off until a tenant's batch is sent: (tenant,
    instructions per request) for each of `SERVED`."""
    out = work / f"callgrind-{skip}"
    prefix = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    with _world_process(work, f"count-{skip}", prefix, skip) as (proc, port, raw):
        pid = str(proc.pid)
        results = []
        for name in (SERVED_SKIPPED if skip else SERVED) * repeats:
            asyncio.run(_send(port, raw[name], 200, connections))  # warm, not counted
            subprocess.run([control, "--instr=on", pid], check=True, capture_output=True)
            asyncio.run(_send(port, raw[name], requests, connections))
            subprocess.run([control, "--instr=off", pid], check=True, capture_output=True)
            subprocess.run([control, f"--dump={name}", pid], check=True, capture_output=True)
            dump = max(work.glob(f"callgrind-{skip}.*"), key=lambda path: path.stat().st_mtime_ns)
            totals = re.search(r"(?m)^totals: (\d+)", dump.read_text())
            assert totals is not None, dump
            results.append((name, int(totals[1]) / requests))
            if keep is not None:  # for `callgrind_annotate`: where a difference goes
                shutil.copy(dump, keep / f"{'skipped' if skip else 'real'}-{name}-{len(results)}")
            dump.unlink()
        return results


def _user_share(work: Path, connections: int) -> float:
    """The share of S1's CPU in user space, served on one CPU with wrk on the other for 10 s."""
    server_cpu, load_cpu = cpu_pair()
    with _world_process(work, "wrk", ["taskset", "-c", str(server_cpu)]) as (proc, port, raw):
        asyncio.run(_send(port, raw["shop"], 2000, connections))  # warm
        requests = write_requests(work / "s1.lua", [_wrk_request(raw["shop"])])
        server = Server("bridge", proc, port, work / "server-wrk.log")
        before = server.cpu_times()
        run_wrk(server, requests, 10, connections, load_cpu)
        user, system = (b - a for a, b in zip(before, server.cpu_times(), strict=True))
    return user / (user + system)


def _wrk_request(raw: bytes) -> tuple[dict[str, str], str]:
    head, _, body = raw.decode().partition("\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
    fields.pop("content-length")  # wrk sets it
    return fields, body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--bytecodes", action="store_true", help="count calls and bytecodes")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions of served requests"
    )
    parser.add_argument("--requests", type=int, default=1000, help="per count (--instructions)")
    parser.add_argument("--connections", type=int, default=32, help="(--instructions)")
    parser.add_argument("--repeats", type=int, default=5, help="counts per tenant (--instructions)")
    parser.add_argument(
        "--keep", type=Path, help="a directory for each count's callgrind file (--instructions)"
    )
    parser.add_argument(
        "--steps", type=int, help="count instructions of the rate step and headers in a loop"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # one world, served
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # `--steps`' loop
    args = parser.parse_args()
    if args.serve:
        loop_factory = uvicorn.Config("bridge.asgi:create").get_loop_factory()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(served(args.serve, args.port, args.skip))
        raise SystemExit(0)
    if args.steps is not None and args.inner:
        asyncio.run(steps(args.steps, args.skip))
        raise SystemExit(0)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.steps:
        counted_steps(args.steps)
    elif args.instructions:
        counted_served(args.requests, args.connections, args.repeats, args.keep)
    elif args.bytecodes:
        asyncio.run(counted(200))
    else:
        asyncio.run(timed(args.rounds, args.batch))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
