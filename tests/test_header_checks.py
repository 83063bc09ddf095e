"""uvicorn's response-header checks, remembered (`bridge.http.CheckedOnce`): the same verdict as
the pattern for every byte, a refused header refused every time, the memory bounded, and a real
uvicorn with `stk-bridge serve`'s options still refusing a header it must refuse."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl

from bridge.guard import server_options
from bridge.http import CHECKED_BYTES, CHECKED_MAX, CheckedOnce

from support.processes import free_port

# uvicorn's own patterns, whether or not a server in this process has wrapped them already.
PATTERNS = [
    p.pattern if isinstance(p, CheckedOnce) else p
    for p in (httptools_impl.HEADER_RE, httptools_impl.HEADER_VALUE_RE)
]


def test_every_byte_gets_the_patterns_verdict_first_and_when_asked_again() -> None:
    for pattern in PATTERNS:
        check = CheckedOnce(pattern)
        for byte in range(256):
            for text in (bytes([byte]), b"ok" + bytes([byte]) + b"ok"):
                expected = pattern.search(text) is not None
                assert (check.search(text) is not None) == expected, (pattern, text)
                assert (check.search(text) is not None) == expected, (pattern, text)


def test_any_bytes_get_the_patterns_verdict() -> None:
    draw = random.Random(7)
    alphabet = bytes(range(256))
    for pattern in PATTERNS:
        check = CheckedOnce(pattern)
        for _ in range(3000):
            text = bytes(draw.choices(alphabet, k=draw.randrange(0, 40)))
            if draw.random() < 0.7:  # mostly clean text, where a refused byte is the exception
                text = text.translate(None, bytes(range(32)) + b"\x7f" + b'()<>@,;:[]={} "\\')
            expected = pattern.search(text)
            for _ in range(2):
                found = check.search(text)
                assert (found is None) == (expected is None), (pattern, text)
                assert found is None or found.group() == expected.group()


def test_a_refused_header_is_never_remembered() -> None:
    check = CheckedOnce(PATTERNS[1])
    assert check.search(b"fine") is None
    for _ in range(3):
        found = check.search(b"split\r\ninjected: 1")
        assert found is not None and found.group() == b"\r"
    assert dict(check) == {b"fine": None}


def test_the_memory_is_bounded_in_count_and_size() -> None:
    check = CheckedOnce(PATTERNS[1])
    for i in range(3 * CHECKED_MAX):
        assert check.search(b"%d" % i) is None
        assert len(check) <= CHECKED_MAX
    check.clear()
    assert check.search(b"x" * (CHECKED_BYTES + 1)) is None
    assert check.search(b"x" * CHECKED_BYTES) is None
    assert list(check) == [b"x" * CHECKED_BYTES]


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    value = b"a\r\nb" if scope["path"] == "/bad" else b"clean"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-v", value)]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_served_with_the_bridge_options_a_bad_header_is_refused_after_good_ones() -> None:
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, lifespan="off", log_config=None, **server_options()
    )
    assert isinstance(httptools_impl.HEADER_RE, CheckedOnce)
    assert isinstance(httptools_impl.HEADER_VALUE_RE, CheckedOnce)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            for _ in range(3):
                good = await client.get("/good")
                assert good.status_code == 200 and good.headers["x-v"] == "clean"
                # uvicorn has marked the response started: it closes the connection, no answer.
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/bad")
    finally:
        server.should_exit = True
        await serving


def test_wrapping_twice_keeps_one_wrapper() -> None:
    server_options()
    first = httptools_impl.HEADER_VALUE_RE
    server_options()
    assert httptools_impl.HEADER_VALUE_RE is first
    assert isinstance(first, CheckedOnce) and isinstance(first.pattern, re.Pattern)
