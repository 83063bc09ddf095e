"""KV on S3-compatible object storage: one object per key under a prefix (docs/storage.md).

`cas` uses the store's conditional writes: read the value and its ETag, compare the bytes, then
write with `If-Match: <etag>` (or `If-None-Match: *` when the key must be absent) and delete with
`If-Match`; the store refuses the write (412, or 409 on a concurrent conditional write) when the
object changed in between, so a lost race is a `False`, never a lost update. An ETag names the
bytes of a plain PUT, so "same ETag" is "same value" here.

Keys are percent-encoded into object names (everything but `[A-Za-z0-9_.:-]`): no `/`, so no
path segments at all, and encoding is per character, so a key prefix stays an object-name prefix
for `keys()`. The operator's credentials come from STK_KV_S3_* or the standard AWS chain.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from tenancy.errors import ServiceUnavailable
from tenancy.kv import KVStore
from tenancy.storage.aws import s3_client
from tenancy.storage.credentials import StoreCredentials

_SAFE = "_.:-"  # with ASCII letters and digits, kept as they are in object names
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT = re.compile(r"^https?://[^/?#\s]+/?$")
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404")
_TIMEOUT = 10.0


def parse_s3_url(url: str) -> tuple[str, str, str, str | None]:
    """`s3://<bucket>/<prefix>?region=&endpoint=` → (bucket, prefix, region, endpoint)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"region", "endpoint"}
    if unknown or any(len(v) != 1 for v in query.values()):
        raise ValueError(f"KV URL {url!r}: only ?region= and ?endpoint= are accepted, once each")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"KV URL {url!r}: {bucket!r} is not a valid S3 bucket name")
    region = query.get("region", ["us-east-1"])[0]
    endpoint = query.get("endpoint", [None])[0]
    if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
        raise ValueError(f"KV URL {url!r}: endpoint must be http(s)://host[:port]")
    prefix = unquote(parts.path).strip("/")
    return bucket, prefix + "/" if prefix else "", region, endpoint


class S3KV(KVStore):
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        region: str,
        endpoint: str | None,
        credentials: StoreCredentials | None,
        timeout: float = _TIMEOUT,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._region = region
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._credentials = credentials
        self._timeout = timeout
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> bytes | None:
        found = await self._get(key)
        return None if found is None else found[0]

    async def set(self, key: str, value: bytes) -> None:
        await self._call("put_object", Bucket=self._bucket, Key=self._name(key), Body=value)

    async def cas(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        found = await self._get(key)
        if (None if found is None else found[0]) != expected:
            return False
        if found is None and value is None:
            return True  # absent stays absent
        target = {"Bucket": self._bucket, "Key": self._name(key)}
        try:
            if value is None:
                assert found is not None
                await self._request("delete_object", **target, IfMatch=found[1])
            elif found is None:
                await self._request("put_object", **target, Body=value, IfNoneMatch="*")
            else:
                await self._request("put_object", **target, Body=value, IfMatch=found[1])
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                return False
            raise _unavailable(exc) from None
        return True

    async def delete(self, *keys: str) -> None:
        names = [self._name(key) for key in keys]
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": name} for name in names[start : start + 1000]]
            answer = await self._call(
                "delete_objects", Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
            )
            if answer.get("Errors"):
                code = answer["Errors"][0].get("Code")
                raise ServiceUnavailable(
                    f"KV store (s3) could not delete: {code}", dependency="KV store"
                )

    async def keys(self, prefix: str) -> list[str]:
        start = len(self._prefix)
        found: list[str] = []
        token: str | None = None
        while True:
            page = await self._call(
                "list_objects_v2",
                Bucket=self._bucket,
                Prefix=self._name(prefix),
                **({"ContinuationToken": token} if token else {}),
            )
            found += [unquote(item["Key"][start:]) for item in page.get("Contents", ())]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(found)

    async def ping(self) -> None:
        await self._call("head_bucket", Bucket=self._bucket)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def _name(self, key: str) -> str:
        return self._prefix + quote(key, safe=_SAFE)

    async def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            answer = await self._request("get_object", Bucket=self._bucket, Key=self._name(key))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise _unavailable(exc) from None
        return answer["Body"], str(answer["ETag"])

    async def _call(self, name: str, **kwargs: Any) -> Any:
        try:
            return await self._request(name, **kwargs)
        except ClientError as exc:
            raise _unavailable(exc) from None

    async def _request(self, name: str, **kwargs: Any) -> Any:
        """One store call under the timeout, body read; the store's refusals pass through."""
        try:
            async with asyncio.timeout(self._timeout):
                client = await self._open()
                answer = await getattr(client, name)(**kwargs)
                if "Body" in answer:
                    async with answer["Body"] as body:
                        answer["Body"] = await body.read()
                return answer
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise ServiceUnavailable(
                f"KV store (s3) unavailable: {type(exc).__name__}", dependency="KV store"
            ) from None

    async def _open(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    client = s3_client(
                        region=self._region,
                        endpoint=self._endpoint,
                        path_style=self._endpoint is not None,
                        credentials=self._credentials,
                        limit=self._timeout,
                    )
                    self._client = await self._stack.enter_async_context(client)
        return self._client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(exc: ClientError) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"KV store (s3) refused the request ({_code(exc)})", dependency="KV store"
    )
