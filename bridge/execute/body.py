"""`POST /call` body and route grammar (`api.md`), checked before any tenant lookup."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from tenancy.errors import BadRequest, NotFound

MAX_DEPTH = 64
PATH_CHARS = re.compile(r"^[A-Za-z0-9_/-]+$")
CRUD_OPS = frozenset({"select", "insert", "update", "delete"})


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "db" | "logics" | "storage"
    name: str  # table or logic name
    op: str  # CRUD op, or "" for logics

    @property
    def template(self) -> str:
        return f"{self.kind}/{self.name}/{self.op}" if self.op else f"{self.kind}/{self.name}"


def parse_body(body: bytes) -> tuple[str, dict[str, Any]]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Body must be valid JSON (UTF-8)") from None
    if not isinstance(payload, dict):
        raise BadRequest("Body must be a JSON object")
    # Counting brackets is a cheap upper bound; only deep-looking bodies are walked.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth(payload) > MAX_DEPTH:
        raise BadRequest(f"JSON nesting deeper than {MAX_DEPTH}")
    extra = set(payload) - {"path", "params"}
    if extra:
        raise BadRequest(f"Unknown field: {sorted(extra)[0]}")
    path = payload.get("path")
    if not isinstance(path, str):
        raise BadRequest("path must be a string")
    params = payload.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest("params must be an object")
    return path, params


def parse_route(path: str) -> Route:
    head, _, rest = path.partition("/")
    if head not in ("db", "logics", "storage"):
        raise NotFound("Unknown route")
    if not PATH_CHARS.fullmatch(path) or "" in path.split("/"):
        raise BadRequest("Malformed path")
    if head == "logics":
        if not rest:
            raise BadRequest("Malformed path")
        return Route("logics", rest, "")
    parts = rest.split("/")
    if len(parts) != 2:
        raise BadRequest("Malformed path")
    if head == "db" and parts[1] not in CRUD_OPS:
        raise BadRequest(f"Unknown operation: {parts[1]}")
    return Route(head, parts[0], parts[1])


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest
