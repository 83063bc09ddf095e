"""A plain keep-alive HTTP client for one-at-a-time timings (S5, S6, S7) and probes.

`http.client` adds well under 0.1 ms per request, so a sequential timing is the server's.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

import orjson


class Client:
    def __init__(self, port: int, host: str | None = None) -> None:
        self.port = port
        self.host = host
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, float]:
        """(status, parsed JSON or None, seconds from sending to the last byte read).

        `body` is JSON text as is, or any other value to serialize.
        """
        sent = dict(headers or {})
        if self.host and "Host" not in sent:
            sent["Host"] = self.host
        payload = None
        if isinstance(body, str):
            payload = body.encode()  # already JSON
        elif body is not None:
            payload = orjson.dumps(body)
        if payload is not None:
            sent.setdefault("Content-Type", "application/json")
        started = time.perf_counter()
        try:
            self._conn.request(method, path, payload, sent)
            response = self._conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self._conn.close()  # the next request reconnects
            raise
        elapsed = time.perf_counter() - started
        return response.status, (orjson.loads(data) if data else None), elapsed

    def call(self, body: Any, headers: dict[str, str]) -> tuple[int, Any, float]:
        return self.request("POST", "/call", body, headers)

    def close(self) -> None:
        self._conn.close()
