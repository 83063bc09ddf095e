"""Identifier rules shared by the admin API, resolution and storage keys."""

from __future__ import annotations

import os
import re
import time

PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
ENV_ID = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_project_id(value: object) -> bool:
    return isinstance(value, str) and PROJECT_ID.fullmatch(value) is not None


def is_env_id(value: object) -> bool:
    return isinstance(value, str) and ENV_ID.fullmatch(value) is not None


def is_alias(value: object) -> bool:
    return isinstance(value, str) and ALIAS.fullmatch(value) is not None


def is_secret_name(value: object) -> bool:
    return isinstance(value, str) and SECRET_NAME.fullmatch(value) is not None


def is_hostname(value: object) -> bool:
    return isinstance(value, str) and HOSTNAME.fullmatch(value) is not None


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID (48-bit ms timestamp + 80 random bits, Crockford base32).

    Written out because every request gets one: python-ulid's generator costs ~10x this.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
