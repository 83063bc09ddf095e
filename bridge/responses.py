"""JSON responses rendered with orjson (and the tenant-data encoder for row values)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from tenancy.encode import dumps


def json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def data(value: Any) -> Response:
    """A data-plane success envelope; row values go through the tenant-data encoder."""
    return Response(dumps({"data": value}), media_type="application/json")


def empty(status: int = 204) -> Response:
    return Response(status_code=status)
