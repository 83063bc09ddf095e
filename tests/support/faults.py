"""A controllable TCP proxy for fault tests: pass, blackhole, refuse or cut a dependency.

Modes: `pass` (forward to the target), `blackhole` (accept, read, never answer; connections
already open stop forwarding too, as a hung host or a dropped route would), and refusing
(`refuse()`: the port is closed, so connects are refused; `accept()` opens it again on the same
port). `delay` (seconds) holds every forwarded chunk back that long. `cut()` drops every
connection in flight, as a failover or a network fault would.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["pass", "blackhole"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, mode: Mode = "pass") -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = mode
        self.port = 0
        self.delay = 0.0
        self.accepted = 0  # connections accepted, ever
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def accept(self) -> int:
        """Listen (again, on the same port once one was chosen); returns the port."""
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def restore(self) -> None:
        """Back to `pass` without delay, listening again; connections that lost data to a
        blackhole are cut (their peers reconnect), as after a network fault."""
        if self.mode == "blackhole":
            self.cut()
        self.mode, self.delay = "pass", 0.0
        if not self.listening:
            await self.accept()

    async def refuse(self) -> None:
        """Close the port and drop every connection: connects are refused from now on."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        await self.refuse()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        ends = [writer]
        self._writers.add(writer)
        try:
            if self.mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            ends.append(up_writer)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            for end in ends:
                self._writers.discard(end)
                end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.mode == "blackhole":
                    continue  # swallowed: the peer waits for an answer that never comes
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.transport.abort()
