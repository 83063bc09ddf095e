"""Server processes pinned to one CPU, and what the kernel says about them (RSS, CPU time)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STK_BRIDGE = str(Path(sys.executable).with_name("stk-bridge"))
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_tools() -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"bench: {' and '.join(missing)} not found; install with "
            "`apt-get install -y wrk util-linux` (Debian/Ubuntu)"
        )
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("bench: needs 2 CPUs (server and load generator on different cores)")


def cpu_pair() -> tuple[int, int]:
    """Server CPU and load-generator CPU: the first two this process may run on."""
    first, second = sorted(os.sched_getaffinity(0))[:2]
    return first, second


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name}")

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """Seconds of CPU so far: in user space, in the kernel (utime, stime)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def launch(
    name: str, args: list[str], env: dict[str, str], cpu: int, cwd: Path, log: Path
) -> Server:
    """Start `args` pinned to `cpu` without waiting; output goes to a file, not a pipe (a full
    pipe would block the server)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), *args, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(name, proc, port, log)


def ready(server: Server) -> Server:
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"bench: {server.name} exited at start:\n{server.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: {server.name} not ready in {timeout:.0f}s:\n{server.tail()}")


def stk_env(**values: str) -> dict[str, str]:
    """This environment without any STK_* setting, plus `values` as STK_<NAME>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STK_")}
    env.update({f"STK_{name.upper()}": value for name, value in values.items()})
    return env


def launch_bridge(env: dict[str, str], cpu: int, workdir: Path, tag: str) -> Server:
    name = f"bridge-{tag}"
    return launch(name, [STK_BRIDGE, "serve"], env, cpu, workdir, workdir / f"{name}.log")


def bridge(env: dict[str, str], cpu: int, workdir: Path, tag: str) -> Server:
    return ready(launch_bridge(env, cpu, workdir, tag))


def floor(config: Path, cpu: int, workdir: Path) -> Server:
    env = {**stk_env(), "BENCH_FLOOR_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    args = [PYTHON, "-m", "bench.floor"]
    return ready(launch("floor", args, env, cpu, workdir, workdir / "floor.log"))
