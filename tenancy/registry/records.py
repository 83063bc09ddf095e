"""Plain, immutable snapshots of registry rows: what caches hold and the request path reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tenancy.engines.base import Pooler
from tenancy.limits import Limits
from tenancy.types import Engine


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: str
    status: str
    default_env: str
    envs: tuple[str, ...]
    hosts: tuple[str, ...]
    limits: Limits
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    project: str
    env: str
    name: str
    roles: tuple[str, ...]
    status: str
    secret_hash: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class AdminTokenRecord:
    """A scoped admin token (`docs/admin.md`); `project` None means every project."""

    token_id: str
    name: str
    project: str | None
    scopes: frozenset[str]
    secret_hash: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A decrypted connection: lives only in process memory, for at most the cache TTL."""

    alias: str
    url: str
    version: int
    engine: Engine
    pooler: Pooler = "none"  # docs/poolers.md

    def __repr__(self) -> str:
        return f"ConnectionInfo(alias={self.alias!r}, version={self.version})"


@dataclass(frozen=True, slots=True)
class VersionedSecret:
    """A decrypted named tenant secret and its version (a new value is a new version): lives only
    in process memory, for at most the cache TTL; never in a repr."""

    version: int
    value: bytes = field(repr=False)
