"""Issue 9's first experiment: anonymous requests with a 24 MB bearer token against one tenant,
while another tenant's calls are timed (`bench/RESULTS.md`, "Oversized headers").

    .venv/bin/python -m bench.big_headers [--seconds 8] [--attackers 2] [--rate 5]

Two `stk-bridge serve` processes in turn on the same CPU: one with the default request limits
(`docs/api.md`, request limits: the server refuses past 16 KB of headers while parsing) and one
with the limits lifted to 64 MB, which is how the Bridge behaved before them (the token read and
decoded on the event loop). For each, the victim tenant's p50/p99 of sequential `/call`s quietly,
then under attack; nothing is asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.client import Client
from bench.stats import summary_ms

ADMIN = "bench-admin-token-0123456789abcdef0123456789"
PING = "---\nauth: public\n---\nSELECT 1 AS ok\n"
TOKEN_BYTES = 24 * 1024 * 1024
LIFTED = str(64 * 1024 * 1024)


def provision(port: int, workdir: Path) -> None:
    admin = Client(port)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for project in ("victim", "target"):
        db = workdir / f"{project}.db"
        db.touch()
        steps: list[tuple[str, str, Any]] = [
            ("POST", "/admin/v1/projects", {"id": project}),
            (
                "PUT",
                f"/admin/v1/projects/{project}/envs/prod/connections/main",
                {"url": f"sqlite:///{db}"},
            ),
            (
                "POST",
                f"/admin/v1/projects/{project}/envs/prod/releases",
                {"files": {"logics/ping.sql": PING}},
            ),
        ]
        for method, path, body in steps:
            status, data, _ = admin.request(method, path, body, auth)
            if status >= 300:
                raise SystemExit(f"bench: {method} {path} answered {status}: {data}")
    admin.close()


def victim_latencies(port: int, seconds: float) -> list[float]:
    client = Client(port, host="victim.localhost")
    body = {"path": "logics/ping"}
    timings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _, elapsed = client.call(body, {})
        if status != 200:
            raise SystemExit(f"bench: victim call answered {status}")
        timings.append(elapsed)
    client.close()
    return timings


def attack(port: int, stop: Any, sent: Any, pause: float) -> None:
    """Send requests whose Authorization header is a 24 MB token, one connection each, until
    `stop`; the server may close the connection early (that is the point). Runs in a process of
    its own, so the victim's timings never wait for this one's interpreter lock."""
    head = b"POST /call HTTP/1.1\r\nHost: target.localhost\r\nContent-Type: application/json\r\n"
    body = b'{"path": "logics/ping"}'
    payload = b"".join(
        [
            head,
            b"Authorization: Bearer " + b"e" * TOKEN_BYTES + b"\r\n",
            b"Content-Length: %d\r\n\r\n" % len(body),
            body,
        ]
    )
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(payload)
                sock.recv(4096)
        except OSError:
            pass
        with sent.get_lock():
            sent.value += 1
        time.sleep(pause)


def measure(label: str, env: dict[str, str], cpu: int, workdir: Path, args: Any) -> dict[str, Any]:
    server = procs.bridge(env, cpu, workdir, label)
    try:
        provision(server.port, workdir / label)
        victim_latencies(server.port, 1)  # warm-up: pools, caches
        began = server.cpu_seconds()
        quiet = summary_ms(victim_latencies(server.port, args.seconds))
        quiet_cpu, began = server.cpu_seconds() - began, server.cpu_seconds()
        stop, sent = multiprocessing.Event(), multiprocessing.Value("i", 0)
        attackers = [
            multiprocessing.Process(
                target=attack, args=(server.port, stop, sent, 1 / args.rate), daemon=True
            )
            for _ in range(args.attackers)
        ]
        for attacker in attackers:
            attacker.start()
        time.sleep(1)  # each has built its payload and is sending
        loud = summary_ms(victim_latencies(server.port, args.seconds))
        loud_cpu = server.cpu_seconds() - began
        stop.set()
        for attacker in attackers:
            attacker.join(60)
    finally:
        server.stop()
    ratio = loud["p99_ms"] / quiet["p99_ms"]
    return {
        "label": label,
        "quiet": quiet,
        "attack": loud,
        "sent": sent.value,
        "p99_ratio": ratio,
        "cpu": (quiet_cpu, loud_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=5, help="big requests per second per sender")
    args = parser.parse_args()
    server_cpu, _ = procs.cpu_pair()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = []
        for label, lifted in (("limits", False), ("no-limits", True)):
            (workdir / label).mkdir()
            values = {
                "data_dir": str(workdir / label / "data"),
                "tenant_data_dir": str(workdir),
                "master_keys": _master_key(),
                "admin_tokens": ADMIN,
                "host_suffix": "localhost",
                "header_timeout_seconds": "60",
            }
            if lifted:
                values |= {"max_header_bytes": LIFTED, "max_token_bytes": LIFTED}
            env = procs.stk_env(**values)
            results.append(measure(label, env, server_cpu, workdir, args))
    senders = f"{args.attackers} senders x {args.rate:g}/s of 24 MB tokens"
    print(f"victim /call p50 / p99 ms, quiet → under {senders}:")
    for r in results:
        q, a = r["quiet"], r["attack"]
        print(
            f"  {r['label']:>9}: {q['p50_ms']} / {q['p99_ms']} → {a['p50_ms']} / {a['p99_ms']}"
            f" (p99 x{r['p99_ratio']:.2f}; {a['n']} victim calls, {r['sent']} big requests;"
            f" server CPU {r['cpu'][0]:.1f} s quiet, {r['cpu'][1]:.1f} s under attack)"
        )


def _master_key() -> str:
    from tenancy.keyring import Keyring

    return Keyring.generate_entry("bench")


if __name__ == "__main__":
    main()
