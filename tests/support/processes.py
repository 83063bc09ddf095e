"""Real `stk-bridge` processes for end-to-end tests: free ports, bounded waits, always stopped.

Used by test_replicas, test_cli and test_dev (marked `slow`). Output goes to files (never a pipe
that could fill and block the server); every process started here is stopped in a `finally`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tenancy.keyring import Keyring

from support.bridge import ADMIN_PREFIX, ADMIN_TOKEN

STK_BRIDGE = str(Path(sys.executable).with_name("stk-bridge"))
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_bound(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def master_keys() -> str:
    return Keyring.generate_entry("test")


def stk_env(**values: str) -> dict[str, str]:
    """This process's environment minus any STK_* setting, plus `values` (as STK_<NAME>)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STK_")}
    env.update({f"STK_{name.upper()}": value for name, value in values.items()})
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STK_BRIDGE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """`<method> /admin/v1<path>` with the admin token (`support.bridge.Bridge.admin` over a
        real socket; the server must run with `STK_ADMIN_TOKENS=ADMIN_TOKEN`)."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        url = self.base + ADMIN_PREFIX + path
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)


def start(args: list[str], env: dict[str, str], cwd: Path, port: int) -> Server:
    out, err = cwd / f"{args[0]}-{port}.out", cwd / f"{args[0]}-{port}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [STK_BRIDGE, *args, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
        )
    return Server(proc, port, out, err)


def wait_ready(server: Server, path: str = "/readyz", timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"stk-bridge exited with {server.proc.returncode}:\n{server.stderr()[-3000:]}"
            )
        try:
            if httpx.get(server.base + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{server.base}{path} not ready in {timeout}s:\n{server.stderr()[-3000:]}")


def stop(server: Server, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """`sig` (graceful), then SIGKILL if it does not exit in time; returns the exit code."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)


@contextmanager
def serving(
    args: list[str], env: dict[str, str], cwd: Path, port: int | None = None
) -> Iterator[Server]:
    """`stk-bridge <args> --host 127.0.0.1 --port <free>`, ready on /readyz, stopped after."""
    server = start(args, env, cwd, port or free_port())
    try:
        wait_ready(server)
        yield server
    finally:
        stop(server)


def poll(check: Callable[[], T | None], timeout: float, every: float = 0.02) -> tuple[T, float]:
    """Call `check` until it returns something truthy; that value and the seconds it took."""
    began = time.monotonic()
    while True:
        value = check()
        elapsed = time.monotonic() - began
        if value:
            return value, elapsed
        if elapsed > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)
