"""What the test object stores really check (docs/storage.md, "Testing against a real store").

These tests use botocore directly, not the Bridge: they prove that the servers the storage tests
rely on refuse what a real S3 refuses, so a passing storage test means something.
"""

from __future__ import annotations

import time
from typing import Any

import botocore.exceptions
import httpx
import pytest

from support.s3 import ObjectStore


def _put_url(store: ObjectStore, who: str, key: str, body: bytes, ctype: str, expires: int) -> str:
    url: str = store.client(who).generate_presigned_url(
        "put_object",
        Params={
            "Bucket": store.accounts[who].bucket,
            "Key": key,
            "ContentType": ctype,
            "ContentLength": len(body),
        },
        ExpiresIn=expires,
    )
    return url


def _status(error: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> int:
    response: Any = error.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def test_presigned_put_binds_type_length_path_and_key(object_store: ObjectStore) -> None:
    body = b"exactly these bytes"
    url = _put_url(object_store, "alpha", "proof/signed.txt", body, "text/plain", 60)
    assert "content-length%3Bcontent-type%3Bhost" in url  # both headers are signed
    attempts = {  # what is changed: (url, body, content type)
        "type": (url, body, "image/png"),
        "length": (url, body + b"!", "text/plain"),
        "key": (url.replace("signed.txt", "other.txt"), body, "text/plain"),
        "bucket": (url.replace("bucket-alpha", "bucket-beta"), body, "text/plain"),
        "expiry": (url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"), body, "text/plain"),
        "key id": (url.replace("alpha-key-0001", "beta-key-0001"), body, "text/plain"),
        "signature": (url[:-4] + "0000", body, "text/plain"),
    }
    statuses = {
        name: httpx.put(u, content=b, headers={"Content-Type": t}).status_code
        for name, (u, b, t) in attempts.items()
    }
    assert statuses == dict.fromkeys(attempts, 403)
    assert object_store.keys("alpha", "proof/") == []
    assert object_store.keys("beta", "proof/") == []
    assert httpx.put(url, content=body, headers={"Content-Type": "text/plain"}).status_code == 200
    assert object_store.keys("alpha", "proof/") == ["proof/signed.txt"]


def test_expired_presigned_url_is_refused(object_store: ObjectStore) -> None:
    client = object_store.client("alpha")
    client.put_object(Bucket="bucket-alpha", Key="proof/expiring.txt", Body=b"x")
    params = {"Bucket": "bucket-alpha", "Key": "proof/expiring.txt"}
    # X-Amz-Date is whole seconds: a 1 s URL may have well under a second left once signed.
    url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=2)
    assert httpx.get(url).status_code == 200
    time.sleep(3.2)
    assert httpx.get(url).status_code == 403


def test_each_access_key_has_its_own_secret(object_store: ObjectStore) -> None:
    alpha = object_store.accounts["alpha"]
    forged = object_store.new_client("beta")
    forged._request_signer._credentials.access_key = alpha.access_key_id  # beta's secret
    with pytest.raises(botocore.exceptions.ClientError) as error:
        forged.put_object(Bucket="bucket-alpha", Key="proof/forged.txt", Body=b"x")
    assert _status(error) == 403
    assert object_store.keys("alpha", "proof/forged") == []


def test_moto_checks_keys_and_bucket_policies(kv_object_store: ObjectStore) -> None:
    operator, stranger = kv_object_store.client("operator"), kv_object_store.client("stranger")
    operator.put_object(Bucket="stk-kv", Key="proof/a", Body=b"1")
    with pytest.raises(botocore.exceptions.ClientError) as error:
        stranger.get_object(Bucket="stk-kv", Key="proof/a")
    assert _status(error) == 403
    forged = kv_object_store.new_client("stranger")
    forged._request_signer._credentials.access_key = kv_object_store.accounts[
        "operator"
    ].access_key_id
    with pytest.raises(botocore.exceptions.ClientError) as error:
        forged.get_object(Bucket="stk-kv", Key="proof/a")
    assert _status(error) == 403


def test_moto_honours_conditional_writes(kv_object_store: ObjectStore) -> None:
    s3 = kv_object_store.client("operator")
    s3.put_object(Bucket="stk-kv", Key="proof/cas", Body=b"v1")
    etag = s3.head_object(Bucket="stk-kv", Key="proof/cas")["ETag"]
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef"'}):
        with pytest.raises(botocore.exceptions.ClientError) as error:
            s3.put_object(Bucket="stk-kv", Key="proof/cas", Body=b"lost", **condition)
        assert _status(error) == 412
    s3.put_object(Bucket="stk-kv", Key="proof/cas", Body=b"v2", IfMatch=etag)
    with pytest.raises(botocore.exceptions.ClientError) as error:  # the old ETag is stale now
        s3.put_object(Bucket="stk-kv", Key="proof/cas", Body=b"v3", IfMatch=etag)
    assert _status(error) == 412
    assert s3.get_object(Bucket="stk-kv", Key="proof/cas")["Body"].read() == b"v2"
