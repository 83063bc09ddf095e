"""Storage calls end to end against a real S3-compatible store (nanio, see support/s3.py).

The Bridge signs; the test then acts as the client and talks to the store with the signed URL,
so every "refused" below is the store's own refusal. Secrets are given through the lookup the
secrets API will provide (`SecretLookup`), with the store's real keys.
"""
# ruff: noqa: E501  (YAML fixtures and call tables read best one per line)

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tenancy.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    StkError,
    Timeout,
    Unauthorized,
)
from tenancy.kv import KVStore, open_kv
from tenancy.principal import ANONYMOUS, Principal, Tenant
from tenancy.releases.compile.sources import Problems
from tenancy.storage.compile import STORAGE_FILE, compile_storage
from tenancy.storage.model import StorageModel
from tenancy.storage.service import StorageService
from tenancy.storage.sessions import MultipartSessions
from tenancy.storage.store import TenantStores, VersionedSecret

from support.s3 import ObjectStore

ALPHA = Tenant("alpha-proj", "prod")
BETA = Tenant("beta-proj", "prod")
ALICE = Principal("user", "alice", frozenset({"public", "authenticated"}))
MIB = 1024 * 1024
POLICIES = """\
policies:
  "avatars/{userId}/*":
    upload_sign: {roles: [authenticated], condition: "path.userId == request.auth.sub", maxSize: 6MB, allowedTypes: [image/png, "text/*"]}
    download_sign: {roles: [public]}
    delete: {roles: [authenticated], condition: "path.userId == request.auth.sub"}
  "docs/*":
    download_sign: {roles: [admin]}
"""


def storage_model(store: ObjectStore, bucket: str, *, endpoint: str | None = None) -> StorageModel:
    text = f"""\
buckets:
  media: {{provider: s3, bucket: {bucket}, region: us-east-1, endpoint: "{endpoint or store.endpoint}", credentials: S3_MEDIA, pathStyle: true}}
  archive: {{provider: s3, bucket: {bucket}, region: us-east-1, endpoint: "{endpoint or store.endpoint}", credentials: S3_ARCHIVE, pathStyle: true}}
{POLICIES}"""
    problems = Problems()
    doc = compile_storage(STORAGE_FILE, text, problems)
    assert problems.items == []
    return StorageModel.from_compiled(doc)


class Secrets:
    """What the secrets API will hand the service: a value and a version per tenant secret."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], VersionedSecret] = {}

    def put(self, tenant: Tenant, name: str, value: str) -> None:
        key = (tenant.project, tenant.env, name)
        version = self.values[key].version + 1 if key in self.values else 1
        self.values[key] = VersionedSecret(version, value.encode())

    async def __call__(self, tenant: Tenant, name: str) -> VersionedSecret | None:
        return self.values.get((tenant.project, tenant.env, name))


class World:
    def __init__(self, store: ObjectStore, kv: KVStore, *, timeout: float = 5.0) -> None:
        self.store = store
        self.secrets = Secrets()
        self.stores = TenantStores(timeout=timeout)
        self.service = StorageService(
            secrets=self.secrets, stores=self.stores, sessions=MultipartSessions(kv)
        )
        self.models = {
            ALPHA: storage_model(store, "bucket-alpha"),
            BETA: storage_model(store, "bucket-beta"),
        }
        for tenant, account in ((ALPHA, "alpha"), (BETA, "beta")):
            for name in ("S3_MEDIA", "S3_ARCHIVE"):
                self.secrets.put(tenant, name, store.accounts[account].secret_json())

    async def call(
        self,
        op: str,
        who: Principal = ALICE,
        tenant: Tenant = ALPHA,
        bucket: str = "media",
        **params: Any,
    ) -> dict[str, Any]:
        return await self.service.call(self.models[tenant], tenant, who, f"{bucket}/{op}", params)


@pytest.fixture
async def world(object_store: ObjectStore) -> AsyncIterator[World]:
    w = World(object_store, open_kv("memory://"))
    yield w
    await w.stores.close()


def _unique(prefix: str) -> str:
    return f"avatars/alice/{prefix}-{time.time_ns()}"


def _put(answer: dict[str, Any], body: bytes, **headers: str) -> int:
    return httpx.put(
        answer["url"], content=body, headers={**answer.get("headers", {}), **headers}
    ).status_code


async def test_upload_download_delete(world: World) -> None:
    key, body = _unique("me") + ".png", b"\x89PNG fake image"
    answer = await world.call(
        "upload_sign", key=key, contentType="image/png", contentLength=len(body)
    )
    assert set(answer) == {"url", "method", "headers", "expiresAt"}
    assert answer["method"] == "PUT"
    assert answer["headers"] == {"Content-Type": "image/png", "Content-Length": str(len(body))}
    assert answer["url"].startswith(f"{world.store.endpoint}/bucket-alpha/avatars/alice/")
    expires = time.mktime(time.strptime(answer["expiresAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 280 < expires - time.time() <= 300
    # The store refuses another type or length than signed, and writes nothing.
    assert _put(answer, body, **{"Content-Type": "image/jpeg"}) == 403
    assert (
        httpx.put(
            answer["url"], content=body + b"!", headers={"Content-Type": "image/png"}
        ).status_code
        == 403
    )
    assert world.store.keys("alpha", key) == []
    assert _put(answer, body) == 200
    assert world.store.keys("alpha", key) == [key]

    download = await world.call("download_sign", who=ANONYMOUS, key=key)
    assert set(download) == {"url", "method", "expiresAt"} and download["method"] == "GET"
    assert httpx.get(download["url"]).content == body
    assert await world.call("delete", key=key) == {}
    assert world.store.keys("alpha", key) == []
    assert httpx.get(download["url"]).status_code == 404


async def test_tampered_and_expired_urls_are_refused(world: World) -> None:
    key, body = _unique("t") + ".txt", b"hello"
    answer = await world.call(
        "upload_sign", key=key, contentType="text/plain", contentLength=5, expiresIn=1
    )
    url = answer["url"]
    for tampered in (
        url.replace("/t-", "/u-"),
        url.replace("X-Amz-Expires=1", "X-Amz-Expires=900"),
        url[:-1] + ("0" if url[-1] != "0" else "1"),
    ):
        assert httpx.put(tampered, content=body, headers=answer["headers"]).status_code == 403
    await asyncio.sleep(2.2)
    assert _put(answer, body) == 403
    assert world.store.keys("alpha", key) == []


async def test_multipart_across_two_replicas_sharing_redis(
    object_store: ObjectStore, redis_url: str
) -> None:
    kv_a, kv_b = open_kv(redis_url), open_kv(redis_url)
    a, b = World(object_store, kv_a), World(object_store, kv_b)
    try:
        key = _unique("big") + ".txt"
        parts = [b"a" * (5 * MIB), b"tail"]
        size = sum(map(len, parts))
        created = await a.call(
            "multipart_create", key=key, contentType="text/plain", contentLength=size
        )
        upload_id = created["uploadId"]
        assert set(created) == {"uploadId"}
        etags = []
        for number, data in enumerate(parts, 1):  # replica B signs the parts
            signed = await b.call(
                "multipart_sign_part", key=key, uploadId=upload_id, partNumber=number
            )
            assert set(signed) == {"url", "method", "expiresAt"} and signed["method"] == "PUT"
            response = httpx.put(signed["url"], content=data)
            assert response.status_code == 200
            etags.append({"partNumber": number, "etag": response.headers["ETag"]})
        # An uploadId is valid only for its tenant, bucket and key.
        foreign = [
            b.call("multipart_sign_part", key=key + "x", uploadId=upload_id, partNumber=1),
            b.call(
                "multipart_sign_part", bucket="archive", key=key, uploadId=upload_id, partNumber=1
            ),
            b.call("multipart_abort", tenant=BETA, key=key, uploadId=upload_id),
            b.call("multipart_complete", key=key, uploadId=upload_id + "x", parts=etags),
        ]
        for call in foreign:
            with pytest.raises(BadRequest, match="Unknown uploadId"):
                await call
        with pytest.raises(BadRequest, match="Parts total 5242880 bytes"):  # the tail is missing
            await a.call("multipart_complete", key=key, uploadId=upload_id, parts=etags[:1])
        assert object_store.keys("alpha", key) == []
        done = await a.call(
            "multipart_complete", key=key, uploadId=upload_id, parts=etags
        )  # replica A
        assert done["key"] == key and done["etag"]
        got = object_store.client("alpha").get_object(Bucket="bucket-alpha", Key=key)
        assert got["Body"].read() == b"".join(parts)
        assert got["ContentType"] == "text/plain"
        with pytest.raises(BadRequest, match="Unknown uploadId"):  # the session is gone
            await b.call("multipart_sign_part", key=key, uploadId=upload_id, partNumber=3)
        await a.call("delete", key=key)
    finally:
        for w in (a, b):
            await w.stores.close()
        await kv_a.close()
        await kv_b.close()


async def test_multipart_abort(world: World) -> None:
    key = _unique("aborted")
    created = await world.call(
        "multipart_create", key=key, contentType="text/plain", contentLength=10
    )
    assert await world.call("multipart_abort", key=key, uploadId=created["uploadId"]) == {}
    with pytest.raises(BadRequest, match="Unknown uploadId"):
        await world.call("multipart_sign_part", key=key, uploadId=created["uploadId"], partNumber=1)
    uploads = world.store.client("alpha").list_multipart_uploads(Bucket="bucket-alpha", Prefix=key)
    assert uploads.get("Uploads", []) == []


async def test_two_tenants_never_reach_each_other(world: World) -> None:
    key, body = "avatars/alice/shared-name.txt", b"alpha's"
    mine = await world.call(
        "upload_sign", key=key, contentType="text/plain", contentLength=len(body)
    )
    theirs = await world.call(
        "upload_sign", tenant=BETA, key=key, contentType="text/plain", contentLength=len(body)
    )
    assert "alpha-key-0001" in mine["url"] and "bucket-alpha" in mine["url"]
    assert "beta-key-0001" in theirs["url"] and "bucket-beta" in theirs["url"]
    to_beta = mine["url"].replace("bucket-alpha", "bucket-beta")
    assert httpx.put(to_beta, content=body, headers=mine["headers"]).status_code == 403
    assert _put(mine, body) == 200
    assert world.store.keys("beta", key) == []
    assert world.store.keys("alpha", key) == [key]
    await world.call("delete", tenant=BETA, key=key)  # deletes in beta's bucket only
    assert world.store.keys("alpha", key) == [key]
    await world.call("delete", key=key)


async def test_secret_rotation_takes_effect_at_once(world: World) -> None:
    key, body = _unique("rot") + ".txt", b"rotated"
    first = await world.call(
        "upload_sign", key=key, contentType="text/plain", contentLength=len(body)
    )
    assert "alpha-key-0001" in first["url"]
    await world.call("delete", key=key)  # a client with the first key is cached now
    world.secrets.put(ALPHA, "S3_MEDIA", world.store.accounts["alpha-rotated"].secret_json())
    second = await world.call(
        "upload_sign", key=key, contentType="text/plain", contentLength=len(body)
    )
    assert "alpha-key-0002" in second["url"] and "alpha-key-0001" not in second["url"]
    assert _put(second, body) == 200
    world.secrets.put(
        ALPHA, "S3_MEDIA", '{"accessKeyId": "alpha-key-0002", "secretAccessKey": "wrong"}'
    )
    with pytest.raises(ServiceUnavailable, match="SignatureDoesNotMatch"):  # the new client is used
        await world.call("delete", key=key)
    assert world.store.keys("alpha", key) == [key]
    world.secrets.put(ALPHA, "S3_MEDIA", world.store.accounts["alpha-rotated"].secret_json())
    await world.call("delete", key=key)
    assert world.store.keys("alpha", key) == []


BAD_CALLS: list[tuple[str, Principal, dict[str, Any], type[StkError]]] = [
    (
        "films/upload_sign",
        ALICE,
        {"key": "avatars/alice/a", "contentType": "text/plain", "contentLength": 1},
        NotFound,
    ),
    ("media/rename", ALICE, {"key": "avatars/alice/a"}, NotFound),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars/alice/../bob/a", "contentType": "text/plain", "contentLength": 1},
        BadRequest,
    ),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars//alice/a", "contentType": "text/plain", "contentLength": 1},
        BadRequest,
    ),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars/alice/a\x00b", "contentType": "text/plain", "contentLength": 1},
        BadRequest,
    ),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars/alice/a", "contentType": "text/plain"},
        BadRequest,
    ),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars/alice/a", "contentType": "text/plain", "contentLength": 7 * MIB},
        BadRequest,
    ),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars/alice/a", "contentType": "image/gif", "contentLength": 1},
        BadRequest,
    ),
    (
        "media/upload_sign",
        ALICE,
        {
            "key": "avatars/alice/a",
            "contentType": "text/plain",
            "contentLength": 1,
            "expiresIn": 901,
        },
        BadRequest,
    ),
    ("media/download_sign", ALICE, {"key": "avatars/alice/a", "expiresIn": 0}, BadRequest),
    (
        "media/upload_sign",
        ALICE,
        {"key": "avatars/bob/a", "contentType": "text/plain", "contentLength": 1},
        Forbidden,
    ),
    (
        "media/upload_sign",
        ANONYMOUS,
        {"key": "avatars/alice/a", "contentType": "text/plain", "contentLength": 1},
        Unauthorized,
    ),
    (
        "media/upload_sign",
        ALICE,
        {"key": "elsewhere/a", "contentType": "text/plain", "contentLength": 1},
        Forbidden,
    ),
    ("media/download_sign", ANONYMOUS, {"key": "docs/a"}, Unauthorized),
    ("media/download_sign", ALICE, {"key": "docs/a"}, Forbidden),
    ("media/delete", ALICE, {"key": "avatars/bob/a"}, Forbidden),
    ("media/delete", ANONYMOUS, {"key": "docs/a"}, Forbidden),
    (
        "media/multipart_create",
        ALICE,
        {"key": "avatars/alice/a", "contentType": "text/plain", "contentLength": 7 * MIB},
        BadRequest,
    ),
    (
        "media/multipart_create",
        ALICE,
        {"key": "avatars/bob/a", "contentType": "text/plain", "contentLength": 1},
        Forbidden,
    ),
    (
        "media/multipart_sign_part",
        ALICE,
        {"key": "avatars/alice/a", "uploadId": "nope", "partNumber": 1},
        BadRequest,
    ),
    (
        "media/multipart_sign_part",
        ALICE,
        {"key": "avatars/alice/a", "uploadId": "nope", "partNumber": 10001},
        BadRequest,
    ),
    (
        "media/multipart_complete",
        ALICE,
        {"key": "avatars/alice/a", "uploadId": "nope", "parts": [{"partNumber": 1, "etag": "e"}]},
        BadRequest,
    ),
    ("media/multipart_abort", ALICE, {"key": "avatars/alice/a", "uploadId": "nope"}, BadRequest),
]


@pytest.mark.parametrize(("path", "who", "params", "error"), BAD_CALLS)
async def test_bad_calls_get_their_error_and_write_nothing(
    world: World, path: str, who: Principal, params: dict[str, Any], error: type[StkError]
) -> None:
    before = world.store.keys("alpha"), world.store.keys("beta")
    with pytest.raises(error) as raised:
        await world.service.call(world.models[ALPHA], ALPHA, who, path, params)
    assert type(raised.value) is error and raised.value.message
    assert (world.store.keys("alpha"), world.store.keys("beta")) == before
    uploads = world.store.client("alpha").list_multipart_uploads(Bucket="bucket-alpha")
    assert uploads.get("Uploads", []) == []


@pytest.mark.parametrize(
    "secret",
    [
        None,
        "not json",
        "[]",
        '{"accessKeyId": "a"}',
        '{"accessKeyId": "a", "secretAccessKey": "b", "extra": 1}',
        '{"accessKeyId": "a", "secretAccessKey": "", "sessionToken": "t"}',
    ],
)
async def test_missing_or_malformed_credentials_are_503(world: World, secret: str | None) -> None:
    world.secrets.values.pop((ALPHA.project, ALPHA.env, "S3_MEDIA"))
    if secret is not None:
        world.secrets.put(ALPHA, "S3_MEDIA", secret)
    for op, params in (
        ("upload_sign", {"contentType": "text/plain", "contentLength": 1}),
        ("delete", {}),
    ):
        with pytest.raises(ServiceUnavailable) as raised:
            await world.call(op, key="avatars/alice/a", **params)
        assert raised.value.message == "Storage credentials unavailable"
    # Another bucket with its own secret is unaffected.
    await world.call("download_sign", bucket="archive", key="avatars/alice/a")


async def _silent_server() -> tuple[asyncio.Server, int]:
    """A TCP server that accepts and never answers: a store that hangs."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_store_failures_are_503_and_504_never_500(object_store: ObjectStore) -> None:
    from support.processes import free_port

    server, port = await _silent_server()
    closed = free_port()
    cases = (  # (endpoint, overall timeout, expected): a refused connection is retried once
        (f"http://127.0.0.1:{closed}", 5.0, ServiceUnavailable),
        (f"http://127.0.0.1:{port}", 0.5, Timeout),
    )
    worlds = []
    try:
        for endpoint, limit, error in cases:
            world = World(object_store, open_kv("memory://"), timeout=limit)
            worlds.append(world)
            model = storage_model(object_store, "bucket-alpha", endpoint=endpoint)
            for op, params in (
                ("delete", {}),
                ("multipart_create", {"contentType": "text/plain", "contentLength": 1}),
            ):
                started = time.monotonic()
                with pytest.raises(error):
                    await world.service.call(
                        model, ALPHA, ALICE, f"media/{op}", {"key": "avatars/alice/a", **params}
                    )
                assert time.monotonic() - started < limit + 5
            # Signing needs no store at all.
            signed = await world.service.call(
                model, ALPHA, ALICE, "media/download_sign", {"key": "avatars/alice/a"}
            )
            assert signed["url"].startswith(f"{endpoint}/bucket-alpha/avatars/alice/a?")
    finally:
        for world in worlds:
            await world.stores.close()
        server.close()
        await server.wait_closed()
