"""Loads the shared fixtures of `tests/support/` (docs/architecture.md "Tests"); tests import
plain helpers from `support.*` directly, never from this file."""

from __future__ import annotations

import pytest

# Helpers assert too (a builder step that answers the wrong status): rewrite them all, not only
# the plugin modules, so their failures read like a test's.
pytest.register_assert_rewrite("support")

pytest_plugins = [
    "support.services",
    "support.s3",
    "support.bridge",
    "support.crud",
    "support.pools",
    "support.browser",
    "support.poolers",
]
