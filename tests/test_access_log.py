"""The access log's batched writes (`docs/operations.md`, access log): lines wait in memory, and
none is lost — written after the batch delay, at the batch size, before any other line, at the
lifespan's end, and when a real server is stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from bridge import logs

from support.bridge import running_bridge
from support.processes import master_keys, serving, stk_env, stop


@contextmanager
def production_log(flush_seconds: float) -> Iterator[io.StringIO]:
    """`bridge.logs.configure` as `stk-bridge serve` calls it, its lines written into a buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    client_log = logging.getLogger("httpx")  # the test client's own line per request
    client_log.disabled = True
    stream = io.StringIO()
    logs.configure("info", "json", flush_seconds)
    production = root.handlers[0]
    assert isinstance(production, logs.JsonHandler)
    production.setStream(stream)
    try:
        yield stream
    finally:
        production.flush()
        root.handlers[:] = handlers
        root.setLevel(level)
        client_log.disabled = False


def access_ids(text: str) -> list[str]:
    lines = [orjson.loads(line) for line in text.splitlines()]
    return [line["requestId"] for line in lines if line["logger"] == "stk.access"]


async def healthz(client: httpx.AsyncClient, count: int) -> list[str]:
    return [(await client.get("/healthz")).headers["x-request-id"] for _ in range(count)]


async def test_lines_wait_for_the_batch_and_are_all_written_at_lifespan_end(
    tmp_path: Path,
) -> None:
    with production_log(flush_seconds=600) as stream:
        async with running_bridge(tmp_path) as b:
            served = await healthz(b.client, 20)
            assert access_ids(stream.getvalue()) == []  # batched, not written yet
        assert access_ids(stream.getvalue()) == served


async def test_a_batch_is_written_after_the_delay(tmp_path: Path) -> None:
    with production_log(flush_seconds=0.05) as stream:
        async with running_bridge(tmp_path) as b:
            served = await healthz(b.client, 3)
            deadline = time.monotonic() + 10
            while access_ids(stream.getvalue()) != served and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert access_ids(stream.getvalue()) == served


async def test_other_lines_keep_their_order_and_a_full_batch_is_written_at_once(
    tmp_path: Path,
) -> None:
    with production_log(flush_seconds=600) as stream:
        async with running_bridge(tmp_path) as b:
            first = await healthz(b.client, 2)
            logging.getLogger("stk.test").warning("after two requests")
            lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
            assert [line.get("requestId") for line in lines[-3:-1]] == first
            assert lines[-1]["msg"] == "after two requests"
            many = await healthz(b.client, logs.BATCH_LINES)
            assert access_ids(stream.getvalue()) == first + many


@pytest.mark.slow
def test_served_responses_are_one_write_and_sigterm_writes_every_batched_line(
    tmp_path: Path,
) -> None:
    """One real `stk-bridge serve`: each response leaves in one write system call (the process's
    `syscw` count; `bridge.http`), and the access lines still in memory at SIGTERM are written."""
    env = stk_env(data_dir=str(tmp_path / "data"), master_keys=master_keys(), log_flush_ms="600000")
    with serving(["serve"], env, tmp_path) as server:
        with httpx.Client(base_url=server.base) as client:
            unknown = {"path": "nowhere"}  # answered before any registry or database work
            client.post("/call", json=unknown)
            writes = _write_calls(server.proc.pid)
            served = [client.post("/call", json=unknown) for _ in range(40)]
            writes = _write_calls(server.proc.pid) - writes
        assert all(
            r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND" for r in served
        )
        assert len(served) <= writes < 1.5 * len(served)  # two per response without coalescing
        ids = [r.headers["x-request-id"] for r in served]
        before = access_ids(_json_lines(server.stderr()))
        assert not set(ids) & set(before)  # still in memory: only the shutdown writes them
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the status reflects it.
        assert stop(server, signal.SIGTERM) in (0, -signal.SIGTERM)
        written = access_ids(_json_lines(server.stderr()))
    assert [i for i in written if i in set(ids)] == ids


def _write_calls(pid: int) -> int:
    """write(2)-family system calls made so far by every thread of `pid`."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/<pid>/io")


def _json_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith("{"))
