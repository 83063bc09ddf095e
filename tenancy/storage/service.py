"""`storage/<bucket>/<op>`: one call from checked params to the answer's `data` (docs/storage.md).

The call pipeline resolves the tenant and the caller, applies rate limits and concurrency, then
hands the bucket, the op and the params here; what comes back is the `data` of the answer, and
every failure is a typed error of `tenancy.errors`. Order of checks (first failure answers):
unknown op or bucket (404), params and key (400), policy and roles and condition (403/401),
limits (400), credentials (503), then the store for the ops that talk to it (400/503/504).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenancy.cache import Cache
from tenancy.errors import BadRequest, NotFound
from tenancy.principal import Principal, Tenant
from tenancy.registry.records import VersionedSecret
from tenancy.storage.access import authorize
from tenancy.storage.credentials import CredentialsUnavailable, StoreCredentials, parse_credentials
from tenancy.storage.model import Bucket, StorageModel
from tenancy.storage.params import PARAMS, StorageRequest, parse_request
from tenancy.storage.sessions import MultipartSession, MultipartSessions
from tenancy.storage.signer import SignedUrl, presign
from tenancy.storage.store import TenantStores

log = logging.getLogger("stk.storage")
# (tenant, secret name) → its current value and version, or None when the env has no such secret
# (`Directory.secret`: cached, and dropped when the secrets API changes one).
SecretLookup = Callable[[Tenant, str], Awaitable[VersionedSecret | None]]


@dataclass(frozen=True, slots=True)
class _Parsed:
    secret: VersionedSecret  # parsed from this value: another value (or version) is parsed anew
    credentials: StoreCredentials


class StorageService:
    def __init__(
        self,
        *,
        secrets: SecretLookup,
        stores: TenantStores,
        sessions: MultipartSessions,
        max_credentials: int = 10_000,
    ) -> None:
        self._secrets = secrets
        self.stores = stores
        self._sessions = sessions
        # Parsed keys per (project, env, secret name): signing needs nothing else.
        self.credentials: Cache[_Parsed] = Cache(
            "storage_credentials", None, max_entries=max_credentials
        )

    async def call(
        self,
        model: StorageModel,
        tenant: Tenant,
        principal: Principal,
        bucket_name: str,
        op: str,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Answer `storage/<bucket_name>/<op>` for this tenant and caller."""
        if op not in PARAMS:
            raise NotFound(f"Unknown storage op '{op}'")
        bucket = model.bucket(bucket_name)
        request = parse_request(op, params)
        authorize(model, request, principal, params)
        secret = await self._secret(tenant, bucket)
        keys = self._keys(tenant, bucket, secret)
        if op == "upload_sign":
            return _signed(self._upload_url(bucket, keys, request))
        if op == "download_sign":
            return _signed(presign(bucket, keys, "GET", request.key, request.expires_in))
        if op == "multipart_sign_part":
            await self._session(tenant, bucket, request)
            return _signed(self._part_url(bucket, keys, request))
        client = await self.stores.client(tenant, bucket, secret, keys)
        store_bucket, key = bucket.store_bucket, request.key
        if op == "delete":
            await client.delete(store_bucket, key)
            return {}
        if op == "multipart_create":
            assert request.content_type is not None and request.content_length is not None
            upload_id = await client.create_multipart(store_bucket, key, request.content_type)
            session = MultipartSession(
                upload_id, request.content_type, request.content_length, time.time()
            )
            await self._sessions.open(tenant, bucket.name, key, session)
            return {"uploadId": upload_id}
        session = await self._session(tenant, bucket, request)
        if op == "multipart_complete":
            sizes = await client.part_sizes(store_bucket, key, session.upload_id)
            _check_parts(request, sizes, session.content_length)
            etag = await client.complete(store_bucket, key, session.upload_id, request.parts)
            await self._sessions.close(tenant, bucket.name, key, session.upload_id)
            return {"key": key, "etag": etag}
        await client.abort(store_bucket, key, session.upload_id)  # multipart_abort
        await self._sessions.close(tenant, bucket.name, key, session.upload_id)
        return {}

    def retire(self, project: str, env: str | None) -> None:
        """A tenant's secret, env or project changed: forget its keys, close its clients."""
        self.credentials.invalidate(project)
        self.stores.retire(project, env)

    async def close(self) -> None:
        await self.stores.close()

    async def _secret(self, tenant: Tenant, bucket: Bucket) -> VersionedSecret:
        secret = await self._secrets(tenant, bucket.credentials)
        if secret is None:
            raise self._unavailable(tenant, bucket, "it is not set")
        return secret

    def _keys(self, tenant: Tenant, bucket: Bucket, secret: VersionedSecret) -> StoreCredentials:
        key = (tenant.project, tenant.env, bucket.credentials)
        parsed = self.credentials.lookup(key)
        if parsed is None or parsed.secret != secret:
            try:
                parsed = _Parsed(secret, parse_credentials(secret.value))
            except CredentialsUnavailable as exc:
                raise self._unavailable(tenant, bucket, exc.reason) from None
            self.credentials.put(key, parsed)
        return parsed.credentials

    @staticmethod
    def _unavailable(tenant: Tenant, bucket: Bucket, reason: str) -> CredentialsUnavailable:
        # The operator learns which secret and why; the caller only the spec's message.
        log.warning(
            "storage secret %s of %s/%s unusable: %s",
            bucket.credentials,
            tenant.project,
            tenant.env,
            reason,
        )
        return CredentialsUnavailable(reason)

    async def _session(
        self, tenant: Tenant, bucket: Bucket, request: StorageRequest
    ) -> MultipartSession:
        assert request.upload_id is not None
        return await self._sessions.find(tenant, bucket.name, request.key, request.upload_id)

    @staticmethod
    def _upload_url(bucket: Bucket, keys: StoreCredentials, request: StorageRequest) -> SignedUrl:
        headers = {
            "Content-Type": str(request.content_type),
            "Content-Length": str(request.content_length),
        }
        return presign(bucket, keys, "PUT", request.key, request.expires_in, headers=headers)

    @staticmethod
    def _part_url(bucket: Bucket, keys: StoreCredentials, request: StorageRequest) -> SignedUrl:
        query = {"partNumber": str(request.part_number), "uploadId": str(request.upload_id)}
        return presign(bucket, keys, "PUT", request.key, request.expires_in, query=query)


def _signed(url: SignedUrl) -> dict[str, Any]:
    data: dict[str, Any] = {"url": url.url, "method": url.method, "expiresAt": url.expires_at}
    if url.headers:
        data["headers"] = dict(url.headers)
    return data


def _check_parts(request: StorageRequest, sizes: Mapping[int, int], declared: int) -> None:
    """The parts named must exist at the store and add up to the length declared at create."""
    total = 0
    for part in request.parts:
        if part.number not in sizes:
            raise BadRequest(f"Part {part.number} was not uploaded")
        total += sizes[part.number]
    if total != declared:
        raise BadRequest(f"Parts total {total} bytes; multipart_create declared {declared}")
