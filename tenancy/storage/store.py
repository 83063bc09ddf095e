"""The calls the Bridge itself makes to a tenant's store, and the clients that make them.

Only `delete` and the multipart ops talk to the store (docs/storage.md, rule 8). Each call runs
under one overall timeout (botocore's own connect/read timeouts and retries sit inside it) and
every failure becomes a typed error: the store's refusal of a client mistake (an unknown upload,
bad parts) is a 400, a timeout a 504, anything else a 503, never a 500.

Clients are cached per (project, env, credentials secret) and rebuilt when the secret's version
changes; `TenantStores` is kept deliberately small so that it can move onto the shared cache
toolkit (docs/architecture.md) without changing its callers.
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
from tenancy.storage.aws import s3_client
from tenancy.storage.credentials import StoreCredentials, parse_credentials
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


@dataclass(frozen=True, slots=True)
class VersionedSecret:
    """A tenant secret's current value and version, as the secrets API keeps it."""

    version: int
    value: bytes = field(repr=False)


class StoreClient:
    """One aiobotocore S3 client with a tenant's keys, for one endpoint and region."""

    def __init__(self, client: Any, stack: AsyncExitStack, timeout: float) -> None:
        self._client = client
        self._stack = stack
        self._timeout = timeout

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
    version: int
    credentials: StoreCredentials
    clients: dict[Bucket, StoreClient] = field(default_factory=dict)


class TenantStores:
    """Parsed credentials and open clients per (project, env, secret name) and secret version."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = timeout
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._lock = asyncio.Lock()

    async def credentials(
        self, tenant: Tenant, name: str, secret: VersionedSecret
    ) -> StoreCredentials:
        """The keys of this secret version, parsed once per version (signing needs nothing else)."""
        entry = self._entries.get((tenant.project, tenant.env, name))
        if entry is not None and entry.version == secret.version:
            return entry.credentials
        return (await self._replace(tenant, name, secret)).credentials

    async def client(self, tenant: Tenant, bucket: Bucket, secret: VersionedSecret) -> StoreClient:
        """An open client for this bucket's store with this secret version's keys."""
        entry = self._entries.get((tenant.project, tenant.env, bucket.credentials))
        if entry is None or entry.version != secret.version:
            entry = await self._replace(tenant, bucket.credentials, secret)
        client = entry.clients.get(bucket)
        if client is None:
            async with self._lock:
                client = entry.clients.get(bucket)
                if client is None:
                    client = await StoreClient.open(bucket, entry.credentials, self._timeout)
                    entry.clients[bucket] = client
        return client

    async def drop(self, tenant: Tenant) -> None:
        """Close every client of a tenant (when its other resources are closed)."""
        for key in [k for k in self._entries if k[:2] == (tenant.project, tenant.env)]:
            await self._close(self._entries.pop(key))

    async def close(self) -> None:
        while self._entries:
            await self._close(self._entries.popitem()[1])

    async def _replace(self, tenant: Tenant, name: str, secret: VersionedSecret) -> _Entry:
        credentials = parse_credentials(secret.value)
        async with self._lock:
            key = (tenant.project, tenant.env, name)
            current = self._entries.get(key)
            if current is not None and current.version == secret.version:
                return current
            if current is not None and current.version > secret.version:
                return current  # a read older than what is cached: the newer keys win
            self._entries[key] = entry = _Entry(secret.version, credentials)
        if current is not None:
            await self._close(current)
        return entry

    @staticmethod
    async def _close(entry: _Entry) -> None:
        for client in entry.clients.values():
            await client.close()
