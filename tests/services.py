"""Skip-or-fail for tests whose service is missing: a green CI must mean every such test ran."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE = os.environ.get("STK_REQUIRE_SERVICES") == "1"


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip with one line, or fail when STK_REQUIRE_SERVICES=1 (CI)."""
    message = f"{service} {reason}"
    if REQUIRE:
        pytest.fail(f"STK_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)
