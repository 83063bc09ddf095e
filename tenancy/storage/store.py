"""The calls the Bridge itself makes to a tenant's store, and the clients that make them.

Only `delete` and the multipart ops talk to the store (docs/storage.md, rule 8). Each call runs
under one overall timeout (botocore's own connect/read timeouts and retries sit inside it) and
every failure becomes a typed error: the store's refusal of a client mistake (an unknown upload,
bad parts) is a 400, a timeout a 504, anything else a 503, never a 500.

Clients are kept per (project, env, credentials secret) and rebuilt when the secret changes
(`TenantStores`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from tenancy.errors import BadRequest, ServiceUnavailable, Timeout
from tenancy.principal import Tenant
from tenancy.registry.records import VersionedSecret
from tenancy.storage.aws import s3_client
from tenancy.storage.credentials import StoreCredentials
from tenancy.storage.model import Bucket
from tenancy.storage.params import Part

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0
# The store's answers that mean the caller's request is wrong, not that the store is failing.
_CALLER_ERRORS = {
    "NoSuchUpload": "Unknown uploadId (aborted, completed or expired at the store)",
    "InvalidPart": "A part was not uploaded or its etag does not match",
    "InvalidPartOrder": "Parts must be listed in ascending partNumber order",
    "EntityTooSmall": "Every part but the last must be at least 5 MiB",
}


class StoreClient:
    """One aiobotocore S3 client with a tenant's keys, for one endpoint and region."""

    def __init__(self, client: Any, stack: AsyncExitStack, timeout: float) -> None:
        self._client = client
        self._stack = stack
        self._timeout = timeout
        self.closed = False

    @classmethod
    async def open(cls, bucket: Bucket, credentials: StoreCredentials, limit: float) -> StoreClient:
        stack = AsyncExitStack()
        client = await stack.enter_async_context(
            s3_client(
                region=bucket.region,
                endpoint=bucket.endpoint,
                path_style=bucket.path_style,
                credentials=credentials,
                limit=limit,
            )
        )
        return cls(client, stack, limit)

    async def delete(self, bucket: str, key: str) -> None:
        await self._call(self._client.delete_object, Bucket=bucket, Key=key)

    async def create_multipart(self, bucket: str, key: str, content_type: str) -> str:
        answer = await self._call(
            self._client.create_multipart_upload, Bucket=bucket, Key=key, ContentType=content_type
        )
        return str(answer["UploadId"])

    async def part_sizes(self, bucket: str, key: str, upload_id: str) -> dict[int, int]:
        """Size of every uploaded part by number (the store lists at most 1000 per page)."""
        sizes: dict[int, int] = {}
        marker = 0
        while True:
            page = await self._call(
                self._client.list_parts,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            for part in page.get("Parts", ()):
                sizes[int(part["PartNumber"])] = int(part["Size"])
            if not page.get("IsTruncated"):
                return sizes
            marker = int(page["NextPartNumberMarker"])

    async def complete(self, bucket: str, key: str, upload_id: str, parts: tuple[Part, ...]) -> str:
        answer = await self._call(
            self._client.complete_multipart_upload,
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
        )
        return str(answer["ETag"])

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        await self._call(
            self._client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id
        )

    async def close(self) -> None:
        self.closed = True
        await self._stack.aclose()

    async def _call(self, method: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await method(**kwargs)
        except (TimeoutError, ReadTimeoutError, ConnectTimeoutError):
            raise Timeout("Object store timed out") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _CALLER_ERRORS:
                raise BadRequest(_CALLER_ERRORS[code]) from None
            raise ServiceUnavailable(f"Object store refused the request ({code})") from None
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            reason = type(exc).__name__
            raise ServiceUnavailable(f"Object store unavailable ({reason})") from None


@dataclass
class _Entry:
    secret: VersionedSecret  # the value the clients were built with
    clients: dict[Bucket, StoreClient] = field(default_factory=dict)


class TenantStores:
    """Open store clients per (project, env, credentials secret) and bucket, for one secret value.

    A small owned registry, not a `tenancy.cache.Cache` (docs/decisions.md): a client holds a
    connection pool and must be closed when dropped, while a `Cache` drops entries silently (LRU,
    TTL, invalidation). Like the database pools, clients leave only through `retire` (a changed
    or deleted secret, env or project: the Runtime's invalidation handler), a new secret value
    (replaced on the next call) and `close` (shutdown). A retired client is closed once no call can
    still be using it: every call through it ends within `timeout`.
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = timeout
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Open clients, retired ones aside (`/metrics`)."""
        return sum(len(entry.clients) for entry in self._entries.values())

    async def client(
        self,
        tenant: Tenant,
        bucket: Bucket,
        secret: VersionedSecret,
        credentials: StoreCredentials,
    ) -> StoreClient:
        """An open client for this bucket's store with the keys of this secret value."""
        key = (tenant.project, tenant.env, bucket.credentials)
        entry = self._entries.get(key)
        if entry is not None and entry.secret == secret:
            client = entry.clients.get(bucket)
            if client is not None:
                return client
        async with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.secret != secret:
                if entry is not None:
                    self._retire(entry)
                self._entries[key] = entry = _Entry(secret)
            client = entry.clients.get(bucket)
            if client is None:
                client = await StoreClient.open(bucket, credentials, self._timeout)
                entry.clients[bucket] = client
            return client

    def retire(self, project: str, env: str | None = None) -> None:
        """Take a project's (or one env's) clients out of service; new calls open new ones."""
        for key in [k for k in self._entries if k[0] == project and env in (None, k[1])]:
            self._retire(self._entries.pop(key))

    async def close(self) -> None:
        """Close every client now, retired ones included (shutdown)."""
        for task in list(self._closing):
            task.cancel()
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            await _close(entry)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _retire(self, entry: _Entry) -> None:
        # Also when empty: a client being opened for it right now lands in it and closes with it.
        task = asyncio.get_running_loop().create_task(self._close_later(entry))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_later(self, entry: _Entry) -> None:
        try:
            await asyncio.sleep(self._timeout + 1)
        finally:  # cancelled at shutdown: close at once
            await _close(entry)


async def _close(entry: _Entry) -> None:
    for client in entry.clients.values():
        await client.close()
