"""The KV store: where bundles and manifests live (`docs/project-files.md`, "Storage keys").

One small contract, four backends. `cas` is the only primitive the release store needs for safe
concurrent updates; every backend implements it atomically, across processes where it can be
shared (file, redis).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from tenancy.redis_url import RedisOptions, connect

if TYPE_CHECKING:
    from tenancy.storage.credentials import StoreCredentials


class KVStore(ABC):
    """Bytes by string key; every method raises `ServiceUnavailable` when unreachable."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes) -> None:
        """Store `value`; it is durable when this returns."""

    @abstractmethod
    async def cas(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace (or delete, when `value` is None) if the current value is `expected`.

        `expected=None` means "absent". Returns whether the swap happened.
        """

    @abstractmethod
    async def delete(self, *keys: str) -> None: ...

    @abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, sorted."""

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


def open_kv(
    url: str,
    *,
    s3_credentials: StoreCredentials | None = None,
    redis: RedisOptions | None = None,
) -> KVStore:
    """`memory://`, `file:///abs/path`, `redis[s]://host:port/db[?prefix=ns:]` or
    `s3://bucket/prefix[?region=&endpoint=]`.

    `s3_credentials` are the operator's keys (STK_KV_S3_*); None uses the standard AWS chain.
    `redis` bounds a Redis client's waits (STK_REDIS_*); None: the settings' defaults.
    """
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from tenancy.kv.memory import MemoryKV

        return MemoryKV()
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"KV URL must be file:///absolute/path, got {url!r}")
        from tenancy.kv.file import FileKV

        return FileKV(unquote(parts.path))
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ValueError(f"KV URL {url!r} has no host")
        from tenancy.kv.redis import RedisKV

        return RedisKV(connect(url, redis or RedisOptions()))
    if parts.scheme == "s3":
        from tenancy.kv.s3 import S3KV, parse_s3_url

        bucket, prefix, region, endpoint = parse_s3_url(url)
        return S3KV(bucket, prefix, region=region, endpoint=endpoint, credentials=s3_credentials)
    raise ValueError(f"KV URL {url!r}: scheme must be memory://, file://, redis:// or s3://")
