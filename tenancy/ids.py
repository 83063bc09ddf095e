"""Identifier rules shared by the admin API, resolution and storage keys."""

from __future__ import annotations

import re

from ulid import ULID

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


def new_ulid() -> str:
    return str(ULID())
