"""Object keys a caller may name (docs/storage.md, rule 2).

The same rule decides whether a literal segment of a policy pattern is possible, so a pattern
that no valid key could match is a publish-time problem, not a silent 403 forever.
"""

from __future__ import annotations

import re

from tenancy.errors import BadRequest

MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def segment_problem(segment: str) -> str | None:
    """Why one `/`-separated segment can never be part of a key ("has ..."), or None."""
    if segment == "":
        return "has an empty segment"
    if segment in (".", ".."):
        return f"has a '{segment}' segment"
    if _CONTROL.search(segment):
        return "has a control character"
    return None


def key_problem(key: object) -> str | None:
    """Why `key` is not a valid object key, or None."""
    if not isinstance(key, str):
        return "must be a string"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from JSON "\ud800"
        return "must be valid UTF-8"
    if not 1 <= size <= MAX_KEY_BYTES:
        return f"must be 1 to {MAX_KEY_BYTES} bytes of UTF-8"
    if key.startswith("/"):
        return "must not start with '/'"
    for segment in key.split("/"):
        problem = segment_problem(segment)
        if problem is not None:
            return problem
    return None


def check_key(key: object) -> str:
    """The key, or BadRequest (400) saying what is wrong with it."""
    problem = key_problem(key)
    if problem is not None:
        raise BadRequest(f"Invalid param 'key': {problem}")
    assert isinstance(key, str)
    return key
