"""Server-generated row ids, one function per schema id policy (`docs/project-files.md`,
`id.generate`).
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable

from tenancy.ids import new_ulid

_NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NANOID_SIZE = 21


def uuid_v4() -> str:
    return str(uuid.uuid4())


def uuid_v7() -> str:
    """RFC 9562 version 7: 48-bit Unix milliseconds, then 74 random bits (Python 3.11 has none)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant 10
    return str(uuid.UUID(int=value))


def nanoid() -> str:
    """21 URL-safe characters: 64 symbols, so masking a random byte with 63 has no bias."""
    return "".join(_NANOID_ALPHABET[b & 63] for b in secrets.token_bytes(_NANOID_SIZE))


GENERATORS: dict[str, Callable[[], str]] = {
    "ulid": new_ulid,
    "uuid_v4": uuid_v4,
    "uuid_v7": uuid_v7,
    "nanoid": nanoid,
}
