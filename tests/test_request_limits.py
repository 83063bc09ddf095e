"""Cheap checks before any parsing (`docs/api.md`, request limits): header size and count, token
length, duplicate security-relevant headers, and deadlines for headers and body, in the app and in
a real `stk-bridge serve` over raw sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import orjson
import pytest

from bridge.guard import HeaderLimits, Refusal, screen

from support.bridge import running_bridge
from support.processes import master_keys, serving, stk_env
from support.world import World

HOST = {"Host": "shop.api.example.com"}


def _error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["message"]


async def test_too_many_or_too_large_headers_are_431(tmp_path):
    async with running_bridge(tmp_path, max_header_count=20, max_header_bytes=4096) as bridge:
        many = {f"x-filler-{i}": "1" for i in range(25)}
        response = await bridge.client.post("/call", headers=many, json={"path": "db/a/select"})
        assert _error(response, 431, "HEADERS_TOO_LARGE") == "Too many request headers"
        large = {"x-filler": "a" * 5000}
        response = await bridge.client.get("/healthz", headers=large)
        _error(response, 431, "HEADERS_TOO_LARGE")


async def test_an_oversized_token_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    """A 24 MB token once stalled the event loop in `jwt.decode`: past STK_MAX_TOKEN_BYTES the
    request is refused by the screen, and no token is ever parsed."""
    from tenancy import tokens

    parsed: list[str] = []
    real_parse = tokens.parse

    def counting_parse(raw: str) -> tokens.ParsedToken:
        parsed.append(raw)
        return real_parse(raw)

    monkeypatch.setattr(tokens, "parse", counting_parse)
    async with running_bridge(tmp_path, max_token_bytes=1024) as bridge:
        await World(bridge).demo("shop")
        token = "e" * 2000
        for headers in ({"Authorization": f"Bearer {token}"}, {"X-Santokit-Api-Key": token}):
            response = await bridge.client.post(
                "/call", headers={**HOST, **headers}, json={"path": "logics/public/stats"}
            )
            _error(response, 431, "HEADERS_TOO_LARGE")
        assert parsed == []
        short = await bridge.client.post(
            "/call",
            headers={**HOST, "Authorization": "Bearer " + "e" * 500},
            json={"path": "logics/public/stats"},
        )
        assert short.status_code == 401 and parsed  # within the limit: verified as usual


DUPLICATES = {
    "host": ["shop.api.example.com", "other.api.example.com"],
    "authorization": ["Bearer a", "Bearer b"],
    "origin": ["https://app.example", "https://evil.example"],
    "content-type": ["application/json", "text/plain"],
    "x-santokit-project": ["shop", "other"],
    "x-santokit-api-key": ["stk_a.b", "stk_c.d"],
}
ROUTES = [
    ("POST", "/call"),
    ("POST", "/auth/login"),
    ("OPTIONS", "/call"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/healthz"),
]


async def test_duplicate_security_headers_are_400_on_every_route(bridge):
    """`/call` used to read the last value and CORS and `/auth/*` the first: now nobody reads
    either, whichever route (preflight included)."""
    await World(bridge).demo("shop")
    for name, values in DUPLICATES.items():
        for method, path in ROUTES:
            headers = [(b"host", b"shop.api.example.com")] if name != "host" else []
            headers += [(name.encode(), v.encode()) for v in values]
            if method == "OPTIONS":
                headers += [(b"access-control-request-method", b"POST")]
            response = await bridge.client.request(
                method, path, headers=headers, content=b'{"path": "db/a/select"}'
            )
            assert _error(response, 400, "BAD_REQUEST") == f"Duplicate header: {name}", (
                name,
                path,
            )


async def test_a_slow_body_is_408_in_the_app(tmp_path):
    """The app's own deadline, for any server: the body has STK_BODY_TIMEOUT_SECONDS to arrive."""
    async with running_bridge(tmp_path, body_timeout_seconds=0.3) as bridge:

        async def trickle():
            yield b'{"path": '
            await asyncio.sleep(2)
            yield b'"db/a/select"}'

        began = time.monotonic()
        headers = {**HOST, "Content-Type": "application/json"}
        response = await bridge.client.post("/call", headers=headers, content=trickle())
        assert time.monotonic() - began < 1.5
        _error(response, 408, "REQUEST_TIMEOUT")
        assert response.headers["connection"] == "close"


# --- a real server over raw sockets -----------------------------------------------------------


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout`)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        pass
    return b"".join(chunks)


def _status_and_error(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)["error"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    cwd: Path = tmp_path_factory.mktemp("limits")
    env = stk_env(
        data_dir=str(cwd / "data"),
        master_keys=master_keys(),
        header_timeout_seconds="1",
        body_timeout_seconds="1",
        max_header_bytes="4096",
        max_header_count="20",
    )
    with serving(["serve"], env, cwd) as running:
        yield running


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


@pytest.mark.slow
def test_half_sent_headers_get_408_and_the_connection_closes(server):
    with _connect(server) as sock:
        sock.sendall(b"POST /call HTTP/1.1\r\nHost: shop.api.example.com\r\nContent-Le")
        began = time.monotonic()
        answer = _read_all(sock, timeout=10)
        elapsed = time.monotonic() - began
    assert elapsed < 5, elapsed  # the deadline is 1 s; generous bound
    status, error = _status_and_error(answer)
    assert status == 408 and error["code"] == "REQUEST_TIMEOUT"
    assert b"connection: close" in answer.lower()


@pytest.mark.slow
def test_a_silent_connection_is_closed(server):
    with _connect(server) as sock:
        began = time.monotonic()
        assert _read_all(sock, timeout=10) == b""  # closed, no answer to a request never made
        assert time.monotonic() - began < 5


@pytest.mark.slow
def test_half_sent_body_gets_408_and_the_connection_closes(server):
    """The protocol times the body; the app answers the 408 (its request id in the header and
    the envelope, as on every answer) and the connection closes."""
    with _connect(server) as sock:
        head = b"POST /call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"path": ')
        began = time.monotonic()
        answer = _read_all(sock, timeout=10)
        elapsed = time.monotonic() - began
    assert elapsed < 5, elapsed
    status, error = _status_and_error(answer)
    assert status == 408 and error["code"] == "REQUEST_TIMEOUT"
    assert f"x-request-id: {error['requestId']}".lower().encode() in answer.lower()
    assert b"connection: close" in answer.lower()


def test_a_served_answer_has_a_date_and_names_no_server_software(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read_all(sock, 5)
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    names = {line.partition(b":")[0].lower() for line in head[1:]}
    assert head[0].startswith(b"HTTP/1.1 200"), head
    assert b"date" in names and b"server" not in names, head


@pytest.mark.slow
def test_a_body_sent_slowly_within_its_deadline_is_served(server):
    """Deadlines are per phase and per request: a head and a body each sent in pieces within
    their own timeout (1 s each here, 1.4 s together) get a real answer, twice on one connection."""
    body = b'{"path": "db/a/select"}'
    head = b"POST /call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(head)
            time.sleep(0.7)
            sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
            time.sleep(0.7)
            sock.sendall(body[5:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += sock.recv(65536)
            status, error = _status_and_error(answer)
            # The whole body was read: the request reached resolution.
            assert (status, error["message"]) == (400, "Project could not be resolved"), error


@pytest.mark.slow
def test_the_server_refuses_large_headers_while_parsing(server):
    """The protocol counts while httptools parses: past the limit it answers 431 at once, without
    waiting for the rest (here, a header section that never ends)."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 6000)
        status, error = _status_and_error(_read_all(sock, timeout=5))
    assert status == 431 and error["code"] == "HEADERS_TOO_LARGE"
    with _connect(server) as sock:
        many = b"".join(b"X-F%d: 1\r\n" % i for i in range(30))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many)
        status, error = _status_and_error(_read_all(sock, timeout=5))
    assert status == 431 and error["message"] == "Too many request headers"


@pytest.mark.slow
def test_keep_alive_requests_each_get_their_own_header_deadline(server):
    with _connect(server) as sock:
        sock.settimeout(5)
        for pause in (0, 0.6):  # the second within keep-alive, on the same connection
            time.sleep(pause)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"ok":true}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        status, _ = _status_and_error(_read_all(sock, timeout=10))
    assert status == 408


def test_the_screen_trusts_only_the_server_s_count():
    """Under the counting protocol the screen skips sizes, never credentials or duplicates."""
    limits = HeaderLimits(max_bytes=40, max_count=2, max_token=8, header_timeout=1, body_timeout=1)
    many = [(b"x-a", b"1"), (b"x-b", b"2"), (b"x-c", b"3" * 40)]
    assert screen(many, dict(many), limits, counted=True) is None
    assert screen(many, dict(many), limits) == Refusal(431, "Too many request headers")
    token = [(b"authorization", b"Bearer 0123456789")]
    for counted in (True, False):
        assert screen(token, dict(token), limits, counted=counted) == Refusal(
            431, "authorization header too large"
        )
        twice = [(b"host", b"a"), (b"host", b"b")]
        assert screen(twice, dict(twice), limits, counted=counted) == Refusal(
            400, "Duplicate header: host"
        )


@pytest.mark.slow
def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(server):
    """uvicorn's keep-alive timeout (5 s), timed by the protocol's own check."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"ok":true}'):
            answer += sock.recv(65536)
        began = time.monotonic()
        rest = _read_all(sock, timeout=15)
        idle = time.monotonic() - began
    assert rest == b"" and 4 < idle < 12, (rest, idle)
