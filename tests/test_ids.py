"""Identifier rules and our own ULID encoder (checked against python-ulid's decoder)."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from ulid import ULID

from tenancy import ids


def test_new_ulid_is_a_valid_time_ordered_ulid() -> None:
    before = time.time()
    values = [ids.new_ulid() for _ in range(2000)]
    after = time.time()
    for value in values:
        parsed = ULID.from_str(value)
        assert str(parsed) == value and len(value) == 26
        assert before - 0.001 <= parsed.timestamp <= after + 0.001
    assert len(set(values)) == len(values)
    assert ids.new_ulid() > values[0]  # later milliseconds sort later


def test_ulid_randomness_is_drawn_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """One os.urandom call per 256 ids, no random part twice, every character as likely."""
    draws: list[int] = []
    real = os.urandom

    def counted(size: int) -> bytes:
        draws.append(size)
        return real(size)

    monkeypatch.setattr(os, "urandom", counted)
    values = [ids.new_ulid() for _ in range(1000)]
    assert 1 <= len(draws) <= 5 and all(size == 4096 for size in draws)
    assert len({value[10:] for value in values}) == len(values)
    # Each random character is one of 32, equally likely: 500 of each expected here (sd ~22).
    counts = Counter("".join(value[10:] for value in values))
    assert set(counts) == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert all(350 < n < 650 for n in counts.values()), counts


def test_forked_child_never_reuses_the_parents_buffered_randomness() -> None:
    ids.new_ulid()  # the buffer holds up to 255 unused random parts now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        os.write(write, " ".join(ids.new_ulid()[10:] for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split())
    os.waitpid(child, 0)
    ours = {ids.new_ulid()[10:] for _ in range(100)}
    assert len(theirs) == 100 and not theirs & ours


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("shop-1", True),
        ("ab", False),
        ("-abc", False),
        ("abc-", False),
        ("Abc", False),
    ],
)
def test_project_ids(value: str, ok: bool) -> None:
    assert ids.is_project_id(value) is ok
