"""Cheap checks before any parsing (`docs/api.md`, request limits): header size, count and token
length, duplicate security-relevant headers, and deadlines for reading headers and body.

Two lines of defence share the limits here. `BoundedHttpToolsProtocol` is the server's own
protocol for `stk-bridge serve` and `dev`: it counts header bytes while httptools parses them and
refuses (431) before the request reaches the app, and answers 408 to a client that has not sent
its headers in time. `screen` repeats the header checks on the ASGI scope (for any server, and the
tests' in-process transport) and adds what the protocol cannot know: duplicate headers and the
token length. No credential is decoded and no tenant looked up before both pass.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.http import CoalescingHttpToolsProtocol, check_headers_once
from tenancy.ids import new_ulid
from tenancy.settings import Settings, load_settings

# A second value of any of these would let two layers read two different answers (`/call` the
# last, CORS the first): refused everywhere, before anything reads them.
SINGLE = frozenset(
    {
        b"host",
        b"authorization",
        b"origin",
        b"content-type",
        b"content-length",
        b"x-forwarded-host",
    }
)
SANTOKIT = b"x-santokit-"
# Headers carrying a credential, bounded by `STK_MAX_TOKEN_BYTES`.
CREDENTIALS = frozenset({b"authorization", b"x-santokit-api-key"})


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    max_bytes: int  # request line target plus every `name: value`
    max_count: int
    max_token: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def of(cls, settings: Settings) -> HeaderLimits:
        return cls(
            settings.max_header_bytes,
            settings.max_header_count,
            settings.max_token_bytes,
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 400 or 431
    message: str


TOO_MANY = "Too many request headers"
TOO_LARGE = "Request headers too large"


def screen(
    headers: list[tuple[bytes, bytes]],
    index: dict[bytes, bytes],
    limits: HeaderLimits,
    *,
    counted: bool = False,
) -> Refusal | None:
    """The first problem found, or None. `index` is `headers` by name (`bridge.context`);
    `counted`: the server's protocol has already enforced the size and count limits.

    The common request (no repeated name, under a counting server) costs two lookups; any other
    gets one pass over the raw list."""
    if counted and len(index) == len(headers):
        for name in CREDENTIALS:
            value = index.get(name)
            if value is not None and len(value) > limits.max_token:
                return Refusal(431, f"{name.decode('latin-1')} header too large")
        return None
    if len(headers) > limits.max_count:
        return Refusal(431, TOO_MANY)
    total = 0
    seen: set[bytes] = set()
    for name, value in headers:
        total += len(name) + len(value) + 4
        if name in SINGLE or name.startswith(SANTOKIT):
            if name in seen:
                return Refusal(400, f"Duplicate header: {name.decode('latin-1')}")
            seen.add(name)
            if name in CREDENTIALS and len(value) > limits.max_token:
                return Refusal(431, f"{name.decode('latin-1')} header too large")
    if total > limits.max_bytes:
        return Refusal(431, TOO_LARGE)
    return None


def raw_envelope(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response in the envelope of `docs/api.md`, closing the connection:
    for the protocol, which answers before any ASGI app (and request id) exists."""
    from bridge.errors import CODES  # the one status → code table

    request_id = new_ulid()
    error = {"code": CODES[status], "message": message, "requestId": request_id}
    body = orjson.dumps({"error": error})
    reason = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
    head = (
        f"HTTP/1.1 {status} {reason[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


@functools.cache
def process_limits() -> HeaderLimits:
    """The limits of this server process, read once from its settings (each `serve` worker is a
    fresh process that reads the same environment as the app it serves)."""
    return HeaderLimits.of(load_settings())


class _Refused(Exception):
    """Stops httptools mid-parse; uvicorn then calls `send_400_response`, which answers ours."""


class BoundedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's httptools protocol with header limits counted while parsing, and deadlines for
    each request's head (from the connection's start, then from each request's first byte) and
    body (from the end of its head). A client silent since it connected is dropped without an
    answer; a partial head or body gets 408 and the connection closes. Its writes are coalesced
    (`bridge.http`): one write per response.

    The deadlines cost no timer per request (`docs/decisions.md`, hot path): each phase only
    records when it is due, and one timer per connection, re-armed when it fires, compares.
    The timer fires at most every `min(header, body timeout)` and never after a due time set
    before it was armed, so a deadline is enforced on time. The scope's `stk.read_deadline`
    extension tells the ASGI layer (`bridge.middleware`) that the body is timed here."""

    limits: HeaderLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = process_limits()
        self._bytes = 0
        self._count = 0
        self._begun = False  # within a request's head: its first byte seen, headers not complete
        self._in_body = False  # head complete, body not yet
        self._pending = 0  # bytes received within the head so far
        self._refusal: Refusal | None = None
        self._due: float | None = None  # when the phase being read must be complete
        self._mark: dict[object, object] = {}  # the request's: "late" once its body is late
        self._timer: asyncio.TimerHandle | None = None
        self._every = min(
            self.limits.header_timeout, self.limits.body_timeout, self.timeout_keep_alive
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._expect(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """httptools buffers a header until its line ends before calling `on_header`: the bytes of
        an unfinished head are counted here (a chunk that also ends the previous request counts
        whole, erring on the strict side for pipelined requests only)."""
        within = self._begun
        super().data_received(data)
        if self._begun and self._refusal is None:
            self._pending = (self._pending if within else 0) + len(data)
            if self._pending > self.limits.max_bytes:
                self._refusal = Refusal(431, TOO_LARGE)
                self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._mark = {}
        self.scope["extensions"] = {"stk.read_deadline": self._mark}
        self._bytes = self._count = 0
        self._begun = True
        self._expect(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._bytes += len(url)
        if self._bytes > self.limits.max_bytes:
            self._refuse(Refusal(431, "Request target too large"))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._bytes += len(name) + len(value) + 4
        self._count += 1
        if self._count > self.limits.max_count:
            self._refuse(Refusal(431, TOO_MANY))
        if self._bytes > self.limits.max_bytes:
            self._refuse(Refusal(431, TOO_LARGE))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._begun = False
        self._in_body = True
        self._expect(self.limits.body_timeout)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, except that the keep-alive wait is one more phase timed by `_check` (a
        connection idle past `timeout_keep_alive` is closed) instead of a timer per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif not self._begun and not self._in_body:  # no next request under way yet
            self._expect(self.timeout_keep_alive)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._due = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        if not self.transport.is_closing():
            self.transport.write(raw_envelope(self._refusal.status, self._refusal.message))
            self.transport.close()

    def _refuse(self, refusal: Refusal) -> None:
        self._refusal = refusal
        raise _Refused(refusal.message)

    def _expect(self, seconds: float) -> None:
        """The phase starting now must end within `seconds`; a timer only if none runs."""
        now = self.loop.time()
        self._due = now + seconds
        if self._timer is None:
            self._timer = self.loop.call_at(now + self._every, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        due = self._due
        if due is None:  # nothing being read: look again later, in case a phase starts
            self._timer = self.loop.call_at(now + self._every, self._check)
        elif now < due:
            self._timer = self.loop.call_at(min(due, now + self._every), self._check)
        elif self._in_body:
            self._late_body()
        elif self._begun:
            self._refusal = Refusal(408, "Request headers not received in time")
            self.send_400_response("")
        else:
            self.transport.close()

    def _late_body(self) -> None:
        """The app answers the 408 itself (its request id, CORS headers, access line): the
        request is marked late and its `receive` woken, which the ASGI layer turns into 408 with
        `Connection: close`. If the app has already answered, the connection just closes: the
        rest of the body will never be read, so it cannot be reused."""
        cycle = self.cycle
        if cycle.response_started:
            self.transport.close()
            return
        self._in_body = False
        self._mark["late"] = True
        cycle.message_event.set()


def server_options() -> dict[str, Any]:
    """uvicorn options for `stk-bridge serve` and `dev` (`bridge/cli.py`, `bridge/dev.py`); the
    protocol's header checks remembered (`bridge.http`). No `Server: uvicorn` on every answer: it
    tells a scanner which server to probe and costs each response a header line
    (`docs/decisions.md`, hot path); `Date` stays, as HTTP asks of an origin with a clock."""
    check_headers_once()
    return {"http": BoundedHttpToolsProtocol, "server_header": False}
