"""Identifier rules and our own ULID encoder (checked against python-ulid's decoder)."""

from __future__ import annotations

import time

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
