"""Identifier rules shared by the admin API, resolution and storage keys."""

from __future__ import annotations

import os
import re
import time

PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
ENV_ID = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A storage.yaml bucket, as named in `storage/<bucket>/<op>`.
BUCKET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
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


def is_bucket_name(value: object) -> bool:
    return isinstance(value, str) and BUCKET_NAME.fullmatch(value) is not None


def is_hostname(value: object) -> bool:
    return isinstance(value, str) and HOSTNAME.fullmatch(value) is not None


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two base32 characters: 13 lookups encode a ULID's 130 bits.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -1, -10))


def new_ulid() -> str:
    """A ULID (48-bit ms timestamp + 80 random bits, Crockford base32).

    Written out because every request gets one: python-ulid's generator costs ~10x this.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
