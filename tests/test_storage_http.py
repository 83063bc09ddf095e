"""`storage/<bucket>/<op>` through the Bridge's HTTP API against a real S3-compatible store (nanio,
see support/s3.py and docs/storage.md).

Tenants are set up as an operator would: project, published `config/storage.yaml`, the store
keys given with the secrets API, API keys for the callers. The Bridge signs; the test then acts
as the client and talks to the store with the signed URL, so every "refused" below is the
store's own refusal. Callers are API keys, whose `request.auth.sub` is their key id: the
policies bind `avatars/{userId}/*` to it.
"""
# ruff: noqa: E501  (YAML fixtures and call tables read best one per line)

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenancy.keyring import Keyring

from support.bridge import Bridge, running_bridge
from support.processes import free_port
from support.s3 import ObjectStore
from support.world import World

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


def storage_yaml(endpoint: str, bucket: str) -> str:
    return f"""\
buckets:
  media: {{provider: s3, bucket: {bucket}, region: us-east-1, endpoint: "{endpoint}", credentials: S3_MEDIA, pathStyle: true}}
  archive: {{provider: s3, bucket: {bucket}, region: us-east-1, endpoint: "{endpoint}", credentials: S3_ARCHIVE, pathStyle: true}}
{POLICIES}"""


@dataclass
class Caller:
    api_key: str | None  # None: anonymous
    sub: str = ""

    def home(self, name: str) -> str:
        """A key of this caller's own avatars (unique per call)."""
        return f"avatars/{self.sub}/{name}-{time.time_ns()}"


@dataclass
class StorageTenant:
    bridge: Bridge
    project: str
    store: ObjectStore
    account: str  # the store account whose keys and bucket the tenant uses
    callers: dict[str, Caller] = field(default_factory=dict)

    @property
    def store_bucket(self) -> str:
        return self.store.accounts[self.account].bucket

    def headers(self, who: str) -> dict[str, str]:
        headers = {"Host": f"{self.project}.api.example.com"}
        key = self.callers[who].api_key
        if key is not None:
            headers["X-Santokit-Api-Key"] = key
        return headers

    async def post(
        self, path: str, params: dict[str, Any], who: str = "user", bridge: Bridge | None = None
    ) -> httpx.Response:
        client = (bridge or self.bridge).client
        return await client.post(
            "/call", json={"path": path, "params": params}, headers=self.headers(who)
        )

    async def call(
        self,
        op: str,
        who: str = "user",
        bucket: str = "media",
        bridge: Bridge | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """The `data` of a successful call."""
        response = await self.post(f"storage/{bucket}/{op}", params, who, bridge)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def set_secret(self, name: str, value: str, bridge: Bridge | None = None) -> None:
        bridge = bridge or self.bridge
        response = await bridge.client.put(
            f"/admin/v1/projects/{self.project}/envs/prod/secrets/{name}",
            json={"value": value},
            headers=bridge.admin_headers,
        )
        assert response.status_code == 200, response.text
        assert value not in response.text

    def keys(self, prefix: str = "") -> list[str]:
        return self.store.keys(self.account, prefix)


async def storage_tenant(
    bridge: Bridge, project: str, store: ObjectStore, account: str, *, endpoint: str | None = None
) -> StorageTenant:
    """Project, storage release, both secrets set to the account's keys, and three callers."""
    admin = bridge.admin_headers
    response = await bridge.client.post("/admin/v1/projects", json={"id": project}, headers=admin)
    assert response.status_code == 201, response.text
    tenant = StorageTenant(bridge, project, store, account)
    await publish(tenant, storage_yaml(endpoint or store.endpoint, tenant.store_bucket))
    for name in ("S3_MEDIA", "S3_ARCHIVE"):
        await tenant.set_secret(name, store.accounts[account].secret_json())
    tenant.callers["anonymous"] = Caller(None)
    for who, roles in (("user", []), ("admin", ["admin"])):
        response = await bridge.client.post(
            f"/admin/v1/projects/{project}/envs/prod/api-keys",
            json={"name": who, "roles": roles},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        tenant.callers[who] = Caller(response.json()["apiKey"], response.json()["keyId"])
    return tenant


async def open_policy(tenant: StorageTenant) -> None:
    """Publish policies where any caller may upload to any `avatars/*/*` (same key, two tenants)."""
    text = storage_yaml(tenant.store.endpoint, tenant.store_bucket)
    text = text.replace("avatars/{userId}/*", "avatars/*/*")
    await publish(tenant, text.replace("path.userId == request.auth.sub", "true"))


async def publish(tenant: StorageTenant, text: str, **options: Any) -> httpx.Response:
    bridge = tenant.bridge
    response = await bridge.client.post(
        f"/admin/v1/projects/{tenant.project}/envs/prod/releases",
        json={"files": {"config/storage.yaml": text}, **options},
        headers=bridge.admin_headers,
    )
    assert response.status_code == 201, response.text
    return response


@pytest.fixture
async def alpha(object_store: ObjectStore, tmp_path: Path) -> AsyncIterator[StorageTenant]:
    async with running_bridge(tmp_path, kv_url=f"file://{tmp_path}/kv") as bridge:
        yield await storage_tenant(bridge, "alpha", object_store, "alpha")


def _put(answer: dict[str, Any], body: bytes, **headers: str) -> int:
    return httpx.put(
        answer["url"], content=body, headers={**answer.get("headers", {}), **headers}
    ).status_code


def _error(response: httpx.Response, status: int) -> str:
    """The envelope's message, after checking the status and the envelope's shape."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) - {"details"} == {"code", "message", "requestId"}
    assert error["code"] and error["message"]
    assert error["requestId"] == response.headers["x-request-id"]
    message: str = error["message"]
    return message


# --- the ops ------------------------------------------------------------------------------------


async def test_upload_download_delete(alpha: StorageTenant) -> None:
    user = alpha.callers["user"]
    key, body = user.home("my photo ü+") + ".png", b"\x89PNG fake image"
    answer = await alpha.call(
        "upload_sign", key=key, contentType="image/png", contentLength=len(body)
    )
    assert set(answer) == {"url", "method", "headers", "expiresAt"}
    assert answer["method"] == "PUT"
    assert answer["headers"] == {"Content-Type": "image/png", "Content-Length": str(len(body))}
    assert answer["url"].startswith(f"{alpha.store.endpoint}/bucket-alpha/avatars/{user.sub}/")
    assert "alpha-key-0001" in answer["url"] and "secret" not in answer["url"]
    expires = time.mktime(time.strptime(answer["expiresAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 280 < expires - time.time() <= 300
    # The store refuses another type or length than signed, and writes nothing.
    assert _put(answer, body, **{"Content-Type": "image/jpeg"}) == 403
    assert _put(answer, body + b"!", **{"Content-Length": str(len(body) + 1)}) == 403
    assert alpha.keys(key) == []
    assert _put(answer, body) == 200
    assert alpha.keys(key) == [key]

    download = await alpha.call("download_sign", who="anonymous", key=key)
    assert set(download) == {"url", "method", "expiresAt"} and download["method"] == "GET"
    assert httpx.get(download["url"]).content == body
    assert await alpha.call("delete", key=key) == {}
    assert alpha.keys(key) == []
    assert httpx.get(download["url"]).status_code == 404


async def test_tampered_and_expired_urls_are_refused(alpha: StorageTenant) -> None:
    key, body = alpha.callers["user"].home("t") + ".txt", b"hello"
    answer = await alpha.call(
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
    assert alpha.keys(key) == []


async def test_multipart_abort(alpha: StorageTenant) -> None:
    key = alpha.callers["user"].home("aborted")
    created = await alpha.call(
        "multipart_create", key=key, contentType="text/plain", contentLength=10
    )
    assert await alpha.call("multipart_abort", key=key, uploadId=created["uploadId"]) == {}
    response = await alpha.post(
        "storage/media/multipart_sign_part",
        {"key": key, "uploadId": created["uploadId"], "partNumber": 1},
    )
    assert _error(response, 400) == "Unknown uploadId for this bucket and key"
    uploads = alpha.store.client("alpha").list_multipart_uploads(Bucket="bucket-alpha", Prefix=key)
    assert uploads.get("Uploads", []) == []


# --- replicas and tenants ---------------------------------------------------------------------


@pytest.fixture
async def replicas(
    object_store: ObjectStore, tmp_path: Path, redis_url: str
) -> AsyncIterator[tuple[StorageTenant, Bridge]]:
    """Tenant alpha on replica A, and replica B sharing A's registry, Redis KV and bus."""
    shared = {
        "registry_url": f"sqlite+aiosqlite:///{tmp_path}/registry.db",
        "kv_url": redis_url,
        "redis_url": redis_url,
        "master_keys": Keyring.generate_entry("shared"),
    }
    async with (
        running_bridge(tmp_path, **shared) as a,
        running_bridge(tmp_path, **shared) as b,
    ):
        yield await storage_tenant(a, "alpha", object_store, "alpha"), b


async def test_multipart_across_two_replicas(replicas: tuple[StorageTenant, Bridge]) -> None:
    alpha, b = replicas
    key = alpha.callers["user"].home("big") + ".txt"
    parts = [b"a" * (5 * MIB), b"tail"]
    size = sum(map(len, parts))
    created = await alpha.call(
        "multipart_create", key=key, contentType="text/plain", contentLength=size
    )
    assert set(created) == {"uploadId"}
    upload_id = created["uploadId"]
    etags = []
    for number, data in enumerate(parts, 1):  # replica B signs the parts
        signed = await alpha.call(
            "multipart_sign_part", bridge=b, key=key, uploadId=upload_id, partNumber=number
        )
        assert set(signed) == {"url", "method", "expiresAt"} and signed["method"] == "PUT"
        response = httpx.put(signed["url"], content=data)
        assert response.status_code == 200
        etags.append({"partNumber": number, "etag": response.headers["ETag"]})
    # An uploadId is valid only for its tenant, bucket and key.
    foreign = [
        ("media/multipart_sign_part", {"key": key + "x", "uploadId": upload_id, "partNumber": 1}),
        ("archive/multipart_sign_part", {"key": key, "uploadId": upload_id, "partNumber": 1}),
        ("media/multipart_complete", {"key": key, "uploadId": upload_id + "x", "parts": etags}),
        ("media/multipart_abort", {"key": key + "x", "uploadId": upload_id}),
    ]
    for path, params in foreign:
        response = await alpha.post(f"storage/{path}", params, bridge=b)
        assert _error(response, 400) == "Unknown uploadId for this bucket and key"
    # Nor for another tenant, with the same bucket name and key (and a policy that allows it).
    beta = await storage_tenant(alpha.bridge, "beta", alpha.store, "beta")
    await open_policy(beta)
    for op, part in (("multipart_sign_part", {"partNumber": 1}), ("multipart_abort", {})):
        params = {"key": key, "uploadId": upload_id, **part}
        response = await beta.post(f"storage/media/{op}", params, bridge=b)
        assert _error(response, 400) == "Unknown uploadId for this bucket and key"
    response = await alpha.post(  # the tail is missing
        "storage/media/multipart_complete", {"key": key, "uploadId": upload_id, "parts": etags[:1]}
    )
    assert _error(response, 400) == f"Parts total {5 * MIB} bytes; multipart_create declared {size}"
    assert alpha.keys(key) == []
    done = await alpha.call("multipart_complete", key=key, uploadId=upload_id, parts=etags)
    assert done["key"] == key and done["etag"]
    got = alpha.store.client("alpha").get_object(Bucket="bucket-alpha", Key=key)
    assert got["Body"].read() == b"".join(parts)
    assert got["ContentType"] == "text/plain"
    response = await alpha.post(  # the session is gone, on every replica
        "storage/media/multipart_sign_part",
        {"key": key, "uploadId": upload_id, "partNumber": 3},
        bridge=b,
    )
    assert _error(response, 400) == "Unknown uploadId for this bucket and key"
    await alpha.call("delete", key=key)


async def test_secret_rotation_reaches_every_replica(
    replicas: tuple[StorageTenant, Bridge],
) -> None:
    alpha, b = replicas
    accounts = alpha.store.accounts
    key, body = alpha.callers["user"].home("rot") + ".txt", b"rotated"
    params = {"key": key, "contentType": "text/plain", "contentLength": len(body)}
    for bridge in (alpha.bridge, b):
        assert "alpha-key-0001" in (await alpha.call("upload_sign", bridge=bridge, **params))["url"]
        await alpha.call("delete", bridge=bridge, key=key)  # a client with the first key is open
        assert len(bridge.rt.storage.stores) == 1
    await alpha.set_secret("S3_MEDIA", accounts["alpha-rotated"].secret_json())
    # At once on the replica that took the change, within the invalidation bound on the other.
    second = await alpha.call("upload_sign", **params)
    assert "alpha-key-0002" in second["url"] and "alpha-key-0001" not in second["url"]
    deadline = time.monotonic() + 5
    while "alpha-key-0002" not in (
        url := (await alpha.call("upload_sign", bridge=b, **params))["url"]
    ):
        assert time.monotonic() < deadline, "replica B still signs with the old key"
        await asyncio.sleep(0.05)
    assert _put({"url": url, "headers": second["headers"]}, body) == 200
    # Both replicas retired the clients built with the old key (signing opens none).
    assert len(alpha.bridge.rt.storage.stores) == 0 and len(b.rt.storage.stores) == 0
    await alpha.set_secret(
        "S3_MEDIA", '{"accessKeyId": "alpha-key-0002", "secretAccessKey": "wrong"}'
    )
    response = await alpha.post("storage/media/delete", {"key": key})
    assert _error(response, 503) == "Object store refused the request (SignatureDoesNotMatch)"
    assert alpha.keys(key) == [key]
    await alpha.set_secret("S3_MEDIA", accounts["alpha-rotated"].secret_json())
    await alpha.call("delete", key=key)
    assert alpha.keys(key) == []


async def test_two_tenants_never_reach_each_other(alpha: StorageTenant) -> None:
    beta = await storage_tenant(alpha.bridge, "beta", alpha.store, "beta")
    key, body = "avatars/shared/name.txt", b"alpha's"
    for tenant in (alpha, beta):  # the same key is allowed in both tenants
        await open_policy(tenant)
    mine = await alpha.call(
        "upload_sign", key=key, contentType="text/plain", contentLength=len(body)
    )
    theirs = await beta.call(
        "upload_sign", key=key, contentType="text/plain", contentLength=len(body)
    )
    assert "alpha-key-0001" in mine["url"] and "/bucket-alpha/" in mine["url"]
    assert "beta-key-0001" in theirs["url"] and "/bucket-beta/" in theirs["url"]
    to_beta = mine["url"].replace("/bucket-alpha/", "/bucket-beta/")
    assert httpx.put(to_beta, content=body, headers=mine["headers"]).status_code == 403
    assert _put(mine, body) == 200
    assert beta.keys(key) == [] and alpha.keys(key) == [key]
    # A caller of one tenant cannot use the other tenant's buckets by naming the other's Host.
    response = await alpha.bridge.client.post(
        "/call",
        json={"path": "storage/media/delete", "params": {"key": key}},
        headers={**beta.headers("user"), "X-Santokit-Api-Key": alpha.callers["user"].api_key or ""},
    )
    assert _error(response, 403) == "API key is not valid for this project or environment"
    assert await beta.call("delete", key=key) == {}  # in beta's bucket only
    assert alpha.keys(key) == [key]
    await alpha.call("delete", key=key)
    assert alpha.keys(key) == []


async def test_clients_close_with_their_tenant_and_at_shutdown(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    async with running_bridge(tmp_path, storage_timeout_seconds=0.5) as bridge:
        tenants = [
            await storage_tenant(bridge, project, object_store, account)
            for project, account in (("alpha", "alpha"), ("beta", "beta"))
        ]
        for tenant in tenants:
            await tenant.call("delete", key=tenant.callers["user"].home("gone"))
        stores = bridge.rt.storage.stores
        # One open client per tenant (the registry's entries, read directly for this test).
        alpha, beta = (next(iter(e.clients.values())) for e in stores._entries.values())
        metrics = (await bridge.client.get("/metrics")).text
        assert "stk_storage_clients_open 2.0" in metrics
        response = await bridge.client.delete(
            "/admin/v1/projects/beta", headers=bridge.admin_headers
        )
        assert response.status_code == 204, response.text
        assert len(stores) == 1 and not beta.closed  # retired: closed once no call can use it
        assert "stk_storage_clients_open 1.0" in (await bridge.client.get("/metrics")).text
        deadline = time.monotonic() + 10
        while not beta.closed:
            assert time.monotonic() < deadline, "the retired client was never closed"
            await asyncio.sleep(0.1)
        assert not alpha.closed
        await tenants[0].call("delete", key=tenants[0].callers["user"].home("gone"))
    assert alpha.closed  # at shutdown


# --- every refusal of the spec: status, envelope, nothing written ----------------------------

# (path, caller, params with {me} for the caller's key id, status)
BAD_CALLS: list[tuple[str, str, dict[str, Any], int]] = [
    (
        "storage/films/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 1},
        404,
    ),
    ("storage/media/rename", "user", {"key": "avatars/{me}/a"}, 404),
    ("storage/media", "user", {"key": "avatars/{me}/a"}, 400),
    ("storage/media/upload_sign/x", "user", {"key": "avatars/{me}/a"}, 400),
    ("storage/media/", "user", {"key": "avatars/{me}/a"}, 400),
    ("storage//upload_sign", "user", {"key": "avatars/{me}/a"}, 400),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/../bob/a", "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars//{me}/a", "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "/avatars/{me}/a", "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/./a", "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a\x00b", "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a\x85b", "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/" + "x" * 1100, "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": 5, "contentType": "text/plain", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain"},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 1, "acl": "public"},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "not a type", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": "1"},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 7 * MIB},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "image/gif", "contentLength": 1},
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {
            "key": "avatars/{me}/a",
            "contentType": "text/plain",
            "contentLength": 1,
            "expiresIn": 901,
        },
        400,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 1, "expiresIn": 0},
        400,
    ),
    ("storage/media/download_sign", "user", {"key": "avatars/{me}/a", "expiresIn": 301}, 400),
    ("storage/media/download_sign", "user", {"key": "avatars/{me}/a", "expiresIn": 0}, 400),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "avatars/bob/a", "contentType": "text/plain", "contentLength": 1},
        403,
    ),
    (
        "storage/media/upload_sign",
        "anonymous",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 1},
        401,
    ),
    (
        "storage/media/upload_sign",
        "user",
        {"key": "elsewhere/a", "contentType": "text/plain", "contentLength": 1},
        403,
    ),
    (
        "storage/media/upload_sign",
        "anonymous",
        {"key": "elsewhere/a", "contentType": "text/plain", "contentLength": 1},
        403,
    ),
    ("storage/media/download_sign", "anonymous", {"key": "docs/a"}, 401),
    ("storage/media/download_sign", "user", {"key": "docs/a"}, 403),
    ("storage/media/delete", "user", {"key": "avatars/bob/a"}, 403),
    ("storage/media/delete", "anonymous", {"key": "docs/a"}, 403),
    ("storage/media/delete", "admin", {"key": "docs/a"}, 403),
    (
        "storage/media/multipart_create",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 7 * MIB},
        400,
    ),
    (
        "storage/media/multipart_create",
        "user",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 5 * 1024**4 + 1},
        400,
    ),
    (
        "storage/media/multipart_create",
        "user",
        {"key": "avatars/bob/a", "contentType": "text/plain", "contentLength": 1},
        403,
    ),
    (
        "storage/media/multipart_create",
        "anonymous",
        {"key": "avatars/{me}/a", "contentType": "text/plain", "contentLength": 1},
        401,
    ),
    (
        "storage/media/multipart_sign_part",
        "user",
        {"key": "avatars/{me}/a", "uploadId": "nope", "partNumber": 1},
        400,
    ),
    (
        "storage/media/multipart_sign_part",
        "user",
        {"key": "avatars/{me}/a", "uploadId": "nope", "partNumber": 10001},
        400,
    ),
    (
        "storage/media/multipart_sign_part",
        "user",
        {"key": "avatars/{me}/a", "uploadId": "nope"},
        400,
    ),
    (
        "storage/media/multipart_complete",
        "user",
        {"key": "avatars/{me}/a", "uploadId": "nope", "parts": [{"partNumber": 1, "etag": "e"}]},
        400,
    ),
    (
        "storage/media/multipart_complete",
        "user",
        {
            "key": "avatars/{me}/a",
            "uploadId": "nope",
            "parts": [{"partNumber": 2, "etag": "e"}, {"partNumber": 1, "etag": "e"}],
        },
        400,
    ),
    (
        "storage/media/multipart_complete",
        "user",
        {"key": "avatars/{me}/a", "uploadId": "nope", "parts": []},
        400,
    ),
    ("storage/media/multipart_abort", "user", {"key": "avatars/{me}/a", "uploadId": "nope"}, 400),
    ("storage/media/multipart_abort", "user", {"key": "avatars/bob/a", "uploadId": "nope"}, 403),
]


def _bind(value: Any, me: str) -> Any:
    return value.replace("{me}", me) if isinstance(value, str) else value


@pytest.mark.parametrize(("path", "who", "params", "status"), BAD_CALLS)
async def test_bad_calls_get_their_status_and_write_nothing(
    alpha: StorageTenant, path: str, who: str, params: dict[str, Any], status: int
) -> None:
    me = alpha.callers["user"].sub
    before = alpha.store.keys("alpha"), alpha.store.keys("beta")
    response = await alpha.post(path, {k: _bind(v, me) for k, v in params.items()}, who)
    message = _error(response, status)
    assert "secret" not in message.lower()
    assert (alpha.store.keys("alpha"), alpha.store.keys("beta")) == before
    uploads = alpha.store.client("alpha").list_multipart_uploads(Bucket="bucket-alpha")
    assert uploads.get("Uploads", []) == []


@pytest.mark.parametrize(
    "secret",
    [
        None,
        "not json",
        "[]",
        '{"accessKeyId": "a"}',
        '{"accessKeyId": "a", "secretAccessKey": "b-value-x", "extra": 1}',
        '{"accessKeyId": "a", "secretAccessKey": "", "sessionToken": "t"}',
    ],
)
async def test_missing_or_malformed_credentials_are_503(
    alpha: StorageTenant, secret: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = alpha.bridge
    if secret is None:
        response = await bridge.client.delete(
            "/admin/v1/projects/alpha/envs/prod/secrets/S3_MEDIA", headers=bridge.admin_headers
        )
        assert response.status_code == 204, response.text
    else:
        await alpha.set_secret("S3_MEDIA", secret)
    key = alpha.callers["user"].home("a")
    with caplog.at_level(logging.INFO):
        for op, params in (
            ("upload_sign", {"contentType": "text/plain", "contentLength": 1}),
            ("delete", {}),
            ("multipart_create", {"contentType": "text/plain", "contentLength": 1}),
        ):
            response = await alpha.post(f"storage/media/{op}", {"key": key, **params})
            assert _error(response, 503) == "Storage credentials unavailable"
    # The operator's log names the secret and why, never its value.
    assert any(
        "storage secret S3_MEDIA of alpha/prod unusable" in r.getMessage() for r in caplog.records
    )
    if secret is not None:
        assert all(secret not in r.getMessage() for r in caplog.records)
    # Another bucket with its own secret is unaffected.
    await alpha.call("download_sign", bucket="archive", key=key)


async def test_secrets_are_sealed_at_rest_and_never_in_the_kv(alpha: StorageTenant) -> None:
    """The secret value is neither in the registry nor in the KV store (file://), in any form a
    grep finds; only the compiled release names the secret."""
    value = alpha.store.accounts["alpha"].secret_access_key
    await alpha.call(
        "upload_sign",
        key=alpha.callers["user"].home("x"),
        contentType="text/plain",
        contentLength=1,
    )
    files = [p for p in alpha.bridge.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "registry.db" for p in files)
    assert any("kv" in p.parts for p in files)
    for path in files:
        assert value.encode() not in path.read_bytes(), path


# --- the store failing -------------------------------------------------------------------------


async def _silent_server() -> tuple[asyncio.Server, int]:
    """A TCP server that accepts and never answers: a store that hangs."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_store_failures_are_503_and_504_never_500(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    server, silent = await _silent_server()
    cases = (  # (endpoint, STK_STORAGE_TIMEOUT_SECONDS, status): a refused connect is retried
        (f"http://127.0.0.1:{free_port()}", 5.0, 503),
        (f"http://127.0.0.1:{silent}", 1.0, 504),
    )
    try:
        for i, (endpoint, limit, status) in enumerate(cases):
            data_dir = tmp_path / str(i)
            data_dir.mkdir()
            async with running_bridge(data_dir, storage_timeout_seconds=limit) as bridge:
                tenant = await storage_tenant(
                    bridge, "alpha", object_store, "alpha", endpoint=endpoint
                )
                key = tenant.callers["user"].home("a")
                for op, params in (
                    ("delete", {}),
                    ("multipart_create", {"contentType": "text/plain", "contentLength": 1}),
                ):
                    started = time.monotonic()
                    response = await tenant.post(f"storage/media/{op}", {"key": key, **params})
                    assert _error(response, status).startswith("Object store")
                    assert time.monotonic() - started < limit + 5
                # Signing needs no store at all.
                signed = await tenant.call("download_sign", key=key)
                assert signed["url"].startswith(f"{endpoint}/bucket-alpha/avatars/")
    finally:
        server.close()
        await server.wait_closed()


# --- publish, limits, metering, the demo -----------------------------------------------------


async def test_publish_reports_every_storage_problem_with_file_and_line(
    alpha: StorageTenant,
) -> None:
    text = """\
buckets:
  media: {provider: gcs, bucket: B, region: us-east-1, credentials: S3_MEDIA}
policies:
  "avatars/{userId}/*":
    upload_sign: {roles: [authenticated], condition: "path.userID == request.auth.sub"}
"""
    response = await alpha.bridge.client.post(
        "/admin/v1/projects/alpha/envs/prod/releases",
        json={"files": {"config/storage.yaml": text}},
        headers=alpha.bridge.admin_headers,
    )
    _error(response, 400)
    details = response.json()["error"]["details"]
    assert {(d["file"], d["line"]) for d in details} == {
        ("config/storage.yaml", 2),
        ("config/storage.yaml", 5),
    }
    messages = " | ".join(d["message"] for d in details)
    assert "`provider` must be one of: s3" in messages
    assert "`bucket` must be a valid S3 bucket name" in messages
    assert "unknown field 'path.userID' (bound here: userId)" in messages
    # The release in service did not change: calls still sign.
    await alpha.call("download_sign", key="avatars/x/y")


async def test_dry_run_shows_the_compiled_storage_and_changes_nothing(alpha: StorageTenant) -> None:
    text = storage_yaml("http://127.0.0.1:1", "other-bucket")
    answer = (await publish(alpha, text, dryRun=True)).json()
    assert answer["dryRun"] is True
    storage = answer["storage"]
    assert storage["buckets"]["media"] == {
        "provider": "s3",
        "bucket": "other-bucket",
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:1",
        "credentials": "S3_MEDIA",
        "pathStyle": True,
    }
    assert [p["pattern"] for p in storage["policies"]] == ["avatars/{userId}/*", "docs/*"]
    assert storage["policies"][0]["rules"]["upload_sign"][0]["maxSize"] == 6 * MIB
    signed = await alpha.call("download_sign", key="avatars/x/y")
    assert "/bucket-alpha/" in signed["url"]  # still the published release
    current = await alpha.bridge.client.get(
        "/admin/v1/projects/alpha/envs/prod/releases/current", headers=alpha.bridge.admin_headers
    )
    assert current.json()["compiled"]["storage"]["buckets"]["media"]["bucket"] == "bucket-alpha"


async def test_storage_calls_count_in_rate_limits_and_metrics(alpha: StorageTenant) -> None:
    bridge = alpha.bridge
    response = await bridge.client.patch(
        "/admin/v1/projects/alpha",
        json={"limits": {"requestsPerMinute": 3}},
        headers=bridge.admin_headers,
    )
    assert response.status_code == 200, response.text
    for _ in range(3):
        await alpha.call("download_sign", key="avatars/x/y")
    response = await alpha.post("storage/media/download_sign", {"key": "avatars/x/y"})
    assert _error(response, 429)
    metrics = (await bridge.client.get("/metrics")).text
    assert 'stk_requests_total{route_kind="storage",status="200"} 3.0' in metrics
    assert 'stk_requests_total{route_kind="storage",status="429"} 1.0' in metrics
    assert 'stk_tenant_cache_events_total{cache="storage_credentials",result="hit"}' in metrics
    assert 'stk_tenant_cache_events_total{cache="secret",result="miss"}' in metrics


async def test_storage_calls_hold_a_concurrency_slot(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    server, silent = await _silent_server()
    try:
        async with running_bridge(tmp_path, storage_timeout_seconds=2.0) as bridge:
            tenant = await storage_tenant(
                bridge, "slow", object_store, "alpha", endpoint=f"http://127.0.0.1:{silent}"
            )
            response = await bridge.client.patch(
                "/admin/v1/projects/slow",
                json={"limits": {"maxConcurrency": 1}},
                headers=bridge.admin_headers,
            )
            assert response.status_code == 200, response.text
            key = tenant.callers["user"].home("a")
            hanging = asyncio.create_task(tenant.post("storage/media/delete", {"key": key}))
            await asyncio.sleep(0.5)  # the delete now holds the tenant's only slot
            shed = await tenant.post("storage/media/download_sign", {"key": key})
            assert _error(shed, 503)
            assert _error(await hanging, 504) == "Object store timed out"
            assert (
                await tenant.post("storage/media/download_sign", {"key": key})
            ).status_code == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_an_s3_kv_uses_the_operator_keys_of_the_settings(
    object_store: ObjectStore,
    kv_object_store: ObjectStore,
    s3_kv_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """STK_KV_S3_* reach the Runtime's KV store (the AWS chain here holds a wrong key): releases
    are written to and read from object storage, and serve storage calls."""
    operator = kv_object_store.accounts["operator"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    keys = {
        "kv_s3_access_key_id": operator.access_key_id,
        "kv_s3_secret_access_key": operator.secret_access_key,
    }
    async with running_bridge(tmp_path, kv_url=s3_kv_url, **keys) as bridge:
        tenant = await storage_tenant(bridge, "alpha", object_store, "alpha")
        await tenant.call("download_sign", key="avatars/x/y")
    prefix = s3_kv_url.split("/")[3].split("?")[0]
    stored = kv_object_store.keys("operator", prefix + "/")
    assert any("manifest" in key for key in stored) and any("bundle" in key for key in stored)


async def test_the_demo_answers_503_until_its_store_credentials_are_set(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:
        api_key = await World(bridge).demo("shop")
        headers = {"Host": "shop.api.example.com", "X-Santokit-Api-Key": api_key}
        call = {"path": "storage/uploads/download_sign", "params": {"key": "public/logo.png"}}
        response = await bridge.client.post("/call", json=call, headers=headers)
        assert _error(response, 503) == "Storage credentials unavailable"
        secret = '{"accessKeyId": "demo-key", "secretAccessKey": "demo-secret-0123456789"}'
        response = await bridge.client.put(
            "/admin/v1/projects/shop/envs/prod/secrets/DEMO_S3",
            json={"value": secret},
            headers=bridge.admin_headers,
        )
        assert response.status_code == 200, response.text
        response = await bridge.client.post("/call", json=call, headers=headers)
        assert response.status_code == 200, response.text
        assert "demo-key" in response.json()["data"]["url"]
