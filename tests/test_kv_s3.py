"""The s3:// KV beyond the shared contract: URL, credentials, object names, failures.

The contract itself (including concurrent compare-and-set) runs in test_kv_contract.py and
test_release_store.py through the `kv_url` fixture, against moto with authentication on.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tenancy.errors import ServiceUnavailable
from tenancy.kv import KVStore, open_kv
from tenancy.kv.s3 import S3KV, parse_s3_url
from tenancy.settings import load_settings
from tenancy.storage.credentials import StoreCredentials

from support.s3 import ObjectStore


def test_url_parts() -> None:
    assert parse_s3_url(
        "s3://stk-kv/releases/prod?region=eu-west-1&endpoint=https://s3.example.com"
    ) == (
        "stk-kv",
        "releases/prod/",
        "eu-west-1",
        "https://s3.example.com",
    )
    assert parse_s3_url("s3://stk-kv") == ("stk-kv", "", "us-east-1", None)
    settings = load_settings(kv_url="s3://stk-kv/p?region=eu-west-1")
    assert settings.kv == "s3://stk-kv/p?region=eu-west-1"


async def _every_call_fails(kv: KVStore, fragment: str) -> None:
    for call in (
        kv.get("k"),
        kv.set("k", b"v"),
        kv.cas("k", None, b"v"),
        kv.delete("k"),
        kv.keys(""),
        kv.ping(),
    ):
        with pytest.raises(ServiceUnavailable, match=fragment):
            await call
    await kv.close()


async def test_operator_keys_from_settings(
    kv_object_store: ObjectStore, s3_kv_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = kv_object_store.accounts["operator"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")  # the settings' keys win over the AWS chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    await _every_call_fails(
        open_kv(s3_kv_url), "InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch|403"
    )
    settings = load_settings(
        kv_url=s3_kv_url,
        kv_s3_access_key_id=operator.access_key_id,
        kv_s3_secret_access_key=operator.secret_access_key,
    )
    kv = open_kv(settings.kv, s3_credentials=settings.kv_s3_credentials())
    try:
        assert await kv.cas("manifest:shop", None, b"{}")
        assert await kv.get("manifest:shop") == b"{}"
    finally:
        await kv.close()


async def test_wrong_secret_and_foreign_bucket_are_unavailable(
    kv_object_store: ObjectStore, s3_kv_url: str
) -> None:
    operator, stranger = kv_object_store.accounts["operator"], kv_object_store.accounts["stranger"]
    wrong = StoreCredentials(operator.access_key_id, "not-the-secret")
    await _every_call_fails(open_kv(s3_kv_url, s3_credentials=wrong), "SignatureDoesNotMatch|403")
    theirs = StoreCredentials(stranger.access_key_id, stranger.secret_access_key)
    await _every_call_fails(open_kv(s3_kv_url, s3_credentials=theirs), "AccessDenied|403")


async def test_unreachable_store_is_unavailable() -> None:
    from support.processes import free_port

    bucket, prefix, region, endpoint = parse_s3_url(
        f"s3://stk-kv/p?endpoint=http://127.0.0.1:{free_port()}"
    )
    kv = S3KV(
        bucket,
        prefix,
        region=region,
        endpoint=endpoint,
        credentials=StoreCredentials("k", "s"),
        timeout=0.5,
    )
    await _every_call_fails(kv, "unavailable")


async def test_keys_become_flat_object_names_under_the_prefix(
    kv_object_store: ObjectStore, s3_kv_url: str
) -> None:
    kv = open_kv(s3_kv_url)
    try:
        for key in ("bundle:shop:ab12", "a/../b", "é %2F"):
            await kv.set(key, b"x")
        prefix = s3_kv_url.split("/")[3].split("?")[0] + "/"
        names = kv_object_store.keys("operator", prefix)
        assert names == sorted(
            prefix + quote(k, safe="_.:-") for k in ("bundle:shop:ab12", "a/../b", "é %2F")
        )
        assert all("/" not in name[len(prefix) :] for name in names)
        assert await kv.keys("a/") == ["a/../b"]
        assert await kv.keys("é") == ["é %2F"]
    finally:
        await kv.close()
