"""ASGI entry for `stk-bridge serve` (an import string, so uvicorn can run several workers)."""

from __future__ import annotations

from starlette.types import ASGIApp

from bridge import logs
from bridge.app import create_app
from tenancy.keyring import Keyring
from tenancy.settings import load_settings


def create() -> ASGIApp:
    settings = load_settings()
    flush_seconds = settings.log_flush_ms / 1000
    logs.configure(settings.log_level, settings.log_format or "json", flush_seconds)
    keyring = Keyring.parse(settings.master_key_text() or "", settings.master_key_primary)
    return create_app(settings, keyring, settings.admin_token_list()).stack
