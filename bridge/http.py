"""The HTTP protocol `stk-bridge serve` runs: uvicorn's httptools protocol, one write per response,
its header checks remembered.

uvicorn writes a response's status line and headers, then its body, each with its own
`transport.write`: two system calls (and two TCP segments) for a small JSON answer, whatever the
application does (`docs/decisions.md`, hot path). The transport handed to the protocol here holds
what is written during one event-loop iteration and writes it at the end of that iteration, or
before anything else touches the connection (close), as one call.

uvicorn also checks every response header's name and value with a regular expression, on every
response (about 2,000 machine instructions a search in a loop). The names, and most values, are
the same few bytes on every response; `CheckedOnce` answers those from what already passed,
which made a served S1 request about 1.5 % cheaper (`bench/RESULTS.md`, fifth pass).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Clean names and values remembered per check, each of at most `CHECKED_BYTES`: past the count
# the memory starts over (a request id, new on every response, would otherwise fill it for
# good), so it holds at most a quarter of a megabyte.
CHECKED_MAX = 1024
CHECKED_BYTES = 256


class CoalescedWrites:
    """A transport whose writes within one loop iteration leave as one write.

    Only `write`, `writelines` and `close` are its own; everything else (flow control, extra
    info, `is_closing`) is the real transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def writelines(self, data: list[bytes]) -> None:
        for item in data:
            self.write(item)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if len(held) == 1:
            self._transport.write(held[0])
        else:
            self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over `CoalescedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalesced: Any = CoalescedWrites(transport, self.loop)
        super().connection_made(coalesced)


class CheckedOnce(dict[bytes, None]):
    """A header check with the `search` of uvicorn's pattern (one character class: it finds any
    byte of the class), remembering the bytes that passed it.

    A remembered text is answered by the dict's own lookup in C (`search` is `dict.__getitem__`:
    None); any other goes to `__missing__`, which deletes the class's bytes from it
    (`bytes.translate`, a fraction of a search) and remembers it when nothing went. A text with
    one of them gets the pattern's own match, every time, and is never remembered."""

    __slots__ = ("_class", "pattern")

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        super().__init__()
        self.pattern = pattern
        self._class = bytes(b for b in range(256) if pattern.search(bytes([b])))

    search = dict.__getitem__

    def __missing__(self, text: bytes) -> re.Match[bytes] | None:
        if len(text.translate(None, self._class)) != len(text):
            return self.pattern.search(text)
        if len(text) <= CHECKED_BYTES:
            if len(self) >= CHECKED_MAX:
                self.clear()
            self[text] = None
        return None


def check_headers_once() -> None:
    """uvicorn's httptools protocol checks response headers through two module patterns
    (`HEADER_RE`, `HEADER_VALUE_RE`): each wrapped once in a `CheckedOnce`."""
    for name in ("HEADER_RE", "HEADER_VALUE_RE"):
        pattern = getattr(httptools_impl, name)
        if not isinstance(pattern, CheckedOnce):
            setattr(httptools_impl, name, CheckedOnce(pattern))
