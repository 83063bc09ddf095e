"""JSON (or text) log lines. Request fields come from the access log call, never from payloads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from bridge.context import current_request

access = logging.getLogger("stk.access")

REQUEST_FIELDS = (
    "requestId",
    "project",
    "env",
    "release",
    "route",
    "status",
    "durationMs",
    "authType",
)


def timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second."""
    second = int(created)
    if second != _last_second[0]:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second[:] = [second, text]
    return f"{_last_second[1]}.{int((created - second) * 1000):03d}+00:00"


_last_second: list[Any] = [None, ""]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in REQUEST_FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class RequestContext(logging.Filter):
    """Stamps any line logged while a request is served with its id, project, env and release,
    so lines from the core carry them too (`docs/tenancy.md` I5)."""

    def filter(self, record: logging.LogRecord) -> bool:
        req = current_request.get()
        if req is not None and "requestId" not in record.__dict__:
            record.requestId = req.request_id
            record.project = req.project
            record.env = req.env
            record.release = req.release_id
        return True


# Access lines waiting in memory past this many are written at once (`docs/operations.md`).
BATCH_LINES = 256


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The JSON handler `configure` installs; access lines are handed to it already formatted.

    They are written in batches (`docs/operations.md`, access log): kept in memory and written
    together `flush_seconds` after the first of a batch, when `BATCH_LINES` are waiting, before
    any other line (so the order is kept), and on `flush` — the app's lifespan end and
    `logging.shutdown` at exit, which is how a SIGTERM'd server writes its last lines.
    """

    def __init__(self, stream: IO[str], flush_seconds: float = 0) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def write_access(self, text: str) -> None:
        if self.flush_seconds <= 0:
            self._pending.append(text)
            self.flush()
            return
        self.acquire()
        try:
            self._pending.append(text)
            waiting = len(self._pending)
        finally:
            self.release()
        if waiting >= BATCH_LINES:
            self.flush()
        elif waiting == 1:
            self._schedule()

    def _schedule(self) -> None:
        """One timer per batch, on the loop serving the request (none: write at once)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._timer is None or self._timer_loop is not loop:
            self._timer = loop.call_later(self.flush_seconds, self.flush)
            self._timer_loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:
            self.flush()
        super().emit(record)

    def flush(self) -> None:
        self.acquire()
        try:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_loop = None
            text = "".join(self._pending)
            self._pending.clear()
            # A closed or broken stream: nowhere to write, and raising from a timer only logs.
            with contextlib.suppress(OSError, ValueError):
                if text:
                    self.stream.write(text)
                super().flush()
        finally:
            self.release()


def make_handler(
    fmt: str, stream: IO[str] | None = None, flush_seconds: float = 0
) -> logging.Handler:
    handler: logging.StreamHandler[IO[str]]
    if fmt == "json":
        handler = JsonHandler(stream or sys.stderr, flush_seconds)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RequestContext())
    return handler


def access_line(method: str, fields: dict[str, Any]) -> None:
    """One access line per request (`docs/operations.md` fields).

    When the root logger's only handler is our JSON handler (production), the line is formatted
    here and handed to it for a batched write: the logging module's record, caller lookup,
    filter and handler chain cost more than the rest of the line. Any other set-up (text, tests
    capturing records) gets an ordinary record.
    """
    if not access.isEnabledFor(logging.INFO):
        return
    message = f"{method} {fields['route']} {fields['status']}"
    handlers = logging.root.handlers
    if len(handlers) == 1 and type(handlers[0]) is JsonHandler and not access.handlers:
        line = {"ts": timestamp(time.time()), "level": "info", "logger": access.name}
        line["msg"] = message
        line.update(fields)
        handlers[0].write_access(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE).decode())
        return
    record = logging.LogRecord(access.name, logging.INFO, __file__, 0, message, None, None)
    record.__dict__.update(fields)
    access.handle(record)


def flush() -> None:
    """Write every batched line now (the app's lifespan end)."""
    for handler in logging.root.handlers:
        handler.flush()


def configure(level: str, fmt: str, flush_seconds: float = 0) -> None:
    # Thread and process names are never logged; skipping them makes every record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = make_handler(fmt, flush_seconds=flush_seconds)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    # aiosqlite echoes every statement with its parameter values at DEBUG; those never belong
    # in a log (`docs/operations.md`), whatever the level.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
