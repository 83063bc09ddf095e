"""JSON (or text) log lines. Request fields come from the access log call, never from payloads."""

from __future__ import annotations

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


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The JSON handler `configure` installs; access lines may be written to it directly."""


def make_handler(fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    handler: logging.StreamHandler[IO[str]]
    if fmt == "json":
        handler = JsonHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RequestContext())
    return handler


def access_line(method: str, fields: dict[str, Any]) -> None:
    """One access line per request (`docs/operations.md` fields).

    When the root logger's only handler is our JSON handler (production), the line is written
    to it directly: the logging module's record, caller lookup, filter and handler chain cost
    more than the rest of the line. Any other set-up (text, tests capturing records) gets an
    ordinary record.
    """
    if not access.isEnabledFor(logging.INFO):
        return
    message = f"{method} {fields['route']} {fields['status']}"
    handlers = logging.root.handlers
    if len(handlers) == 1 and type(handlers[0]) is JsonHandler and not access.handlers:
        handler = handlers[0]
        line = {"ts": timestamp(time.time()), "level": "info", "logger": access.name}
        line["msg"] = message
        line.update(fields)
        text = orjson.dumps(line).decode() + "\n"
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(text)
            handler.stream.flush()
        return
    record = logging.LogRecord(access.name, logging.INFO, __file__, 0, message, None, None)
    record.__dict__.update(fields)
    access.handle(record)


def configure(level: str, fmt: str) -> None:
    # Thread and process names are never logged; skipping them makes every record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = make_handler(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    # aiosqlite echoes every statement with its parameter values at DEBUG; those never belong
    # in a log (`docs/operations.md`), whatever the level.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
