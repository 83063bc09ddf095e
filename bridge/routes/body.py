"""A request body read whole, for the plain-ASGI routes (`/call`, `/auth/*`)."""

from __future__ import annotations

from starlette.types import Receive


async def read_body(receive: Receive) -> bytes:
    """The whole body; the middleware's receive already enforces STK_MAX_BODY_BYTES and the
    body's deadline."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
