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
# Every 10-bit value as its two base32 characters: the 48-bit timestamp (behind 2 zero bits) is
# 5 lookups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_TIME_SHIFTS = (40, 30, 20, 10, 0)
# A random byte's low 5 bits as a base32 character (each of the 32 values from 8 bytes: uniform),
# so one `bytes.translate` of a batch (C speed) yields 16 random characters, 80 random bits, per
# id; RFC 4648 base32 is a Python loop on 3.11, most of a request id's cost.
_FIVE_BITS = bytes(ord(_CROCKFORD[byte & 31]) for byte in range(256))
_BATCH = 256  # random parts drawn per os.urandom call
_RANDOM_CHARS = 16


class _UlidSource:
    """Random parts encoded in batches from one `os.urandom` call, and the timestamp part once
    per millisecond: every request gets an id (`docs/architecture.md`, the request path)."""

    def __init__(self) -> None:
        self.randoms: list[str] = []
        self.millisecond = -1
        self.prefix = ""
        # A forked child must never hand out its parent's buffered randomness.
        os.register_at_fork(after_in_child=self.randoms.clear)

    def refill(self) -> None:
        chars = os.urandom(_RANDOM_CHARS * _BATCH).translate(_FIVE_BITS).decode("ascii")
        self.randoms.extend(
            [chars[start : start + _RANDOM_CHARS] for start in range(0, len(chars), _RANDOM_CHARS)]
        )

    def next(self) -> str:
        millisecond = time.time_ns() // 1_000_000
        if millisecond != self.millisecond:
            self.prefix = "".join([_PAIRS[(millisecond >> s) & 1023] for s in _TIME_SHIFTS])
            self.millisecond = millisecond
        prefix = self.prefix
        try:
            return prefix + self.randoms.pop()
        except IndexError:
            self.refill()
            return prefix + self.randoms.pop()


_source = _UlidSource()


def new_ulid() -> str:
    """A ULID (48-bit ms timestamp + 80 random bits, Crockford base32).

    Written out because every request gets one (python-ulid's generator costs ~10x this); the
    randomness is drawn 256 ids at a time, each id's 80 bits used once.
    """
    return _source.next()
