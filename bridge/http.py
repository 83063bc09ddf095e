"""The HTTP protocol `stk-bridge serve` runs: uvicorn's httptools protocol, one write per response.

uvicorn writes a response's status line and headers, then its body, each with its own
`transport.write`: two system calls (and two TCP segments) for a small JSON answer, whatever the
application does (`docs/decisions.md`, hot path). The transport handed to the protocol here holds
what is written during one event-loop iteration and writes it at the end of that iteration, or
before anything else touches the connection (close), as one call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
