"""Multipart upload sessions in shared storage, so any replica can continue one (rule 7).

One KV entry per (project, env, bucket, key) maps each open uploadId to what was declared at
`multipart_create` (type, whole length) and when. Updates go through the KV's compare-and-set,
so replicas starting or finishing uploads of the same key at once lose nothing. An uploadId is
found only under the tenant, bucket and key it was created for: anything else is a 400. Sessions
expire after 24 hours; expired ones are dropped on the next write of the same entry.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tenancy.errors import BadRequest, ServiceUnavailable
from tenancy.kv import KVStore
from tenancy.principal import Tenant

SESSION_TTL = 86_400
_MAX_ATTEMPTS = 50


@dataclass(frozen=True, slots=True)
class MultipartSession:
    upload_id: str
    content_type: str
    content_length: int
    created: float


class MultipartSessions:
    def __init__(self, kv: KVStore, *, clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock

    async def open(self, tenant: Tenant, bucket: str, key: str, session: MultipartSession) -> None:
        def add(uploads: dict[str, Any]) -> None:
            uploads[session.upload_id] = {
                "contentType": session.content_type,
                "contentLength": session.content_length,
                "created": session.created,
            }

        await self._update(tenant, bucket, key, add)

    async def find(self, tenant: Tenant, bucket: str, key: str, upload_id: str) -> MultipartSession:
        """The live session of `upload_id` for this tenant, bucket and key, else BadRequest."""
        raw = await self._kv.get(_kv_key(tenant, bucket, key))
        found = _uploads(raw).get(upload_id)
        if found is None or self._expired(found):
            raise BadRequest("Unknown uploadId for this bucket and key")
        return MultipartSession(
            upload_id, found["contentType"], found["contentLength"], found["created"]
        )

    async def close(self, tenant: Tenant, bucket: str, key: str, upload_id: str) -> None:
        await self._update(tenant, bucket, key, lambda uploads: uploads.pop(upload_id, None))

    def _expired(self, upload: dict[str, Any]) -> bool:
        return bool(upload["created"] + SESSION_TTL <= self._clock())

    async def _update(
        self, tenant: Tenant, bucket: str, key: str, change: Callable[[dict[str, Any]], object]
    ) -> None:
        kv_key = _kv_key(tenant, bucket, key)
        for _ in range(_MAX_ATTEMPTS):
            raw = await self._kv.get(kv_key)
            uploads = {k: v for k, v in _uploads(raw).items() if not self._expired(v)}
            change(uploads)
            value = orjson.dumps({"key": key, "uploads": uploads}) if uploads else None
            if await self._kv.cas(kv_key, raw, value):
                return
        raise ServiceUnavailable("Multipart sessions are too contended; try again")


def _kv_key(tenant: Tenant, bucket: str, key: str) -> str:
    """Hashed object key: object keys are up to 1 KiB of any text, KV keys must stay short."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"storage:multipart:{tenant.project}:{tenant.env}:{bucket}:{digest}"


def _uploads(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    uploads: dict[str, Any] = orjson.loads(raw)["uploads"]
    return uploads
