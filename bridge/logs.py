"""JSON (or text) log lines. Request fields come from the access log call, never from payloads."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO

import orjson

from bridge.context import current_request

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
    so lines from the core carry them too (`tenancy.md` I5)."""

    def filter(self, record: logging.LogRecord) -> bool:
        req = current_request.get()
        if req is not None and "requestId" not in record.__dict__:
            record.requestId = req.request_id
            record.project = req.project
            record.env = req.env
            record.release = req.release
        return True


def make_handler(fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RequestContext())
    return handler


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
    # in a log (`operations.md`), whatever the level.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
