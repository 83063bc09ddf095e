"""Signed URL form, credential parsing and multipart sessions (no store needed)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from tenancy.errors import BadRequest
from tenancy.kv import open_kv
from tenancy.principal import Tenant
from tenancy.storage.credentials import UNAVAILABLE, CredentialsUnavailable, parse_credentials
from tenancy.storage.model import Bucket
from tenancy.storage.sessions import SESSION_TTL, MultipartSession, MultipartSessions
from tenancy.storage.signer import object_url, presign

KEYS = parse_credentials(b'{"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "s3cr3t-value"}')


def _bucket(endpoint: str | None = None, path_style: bool = False) -> Bucket:
    return Bucket.from_compiled(
        "media",
        {
            "bucket": "acme-media",
            "region": "eu-central-1",
            "endpoint": endpoint,
            "credentials": "S3",
            "pathStyle": path_style,
        },
    )


def test_object_urls() -> None:
    key = "a b/ü+%/~x"
    assert (
        object_url(_bucket(), key)
        == "https://acme-media.s3.eu-central-1.amazonaws.com/a%20b/%C3%BC%2B%25/~x"
    )
    assert (
        object_url(_bucket(path_style=True), "k")
        == "https://s3.eu-central-1.amazonaws.com/acme-media/k"
    )
    assert (
        object_url(_bucket("http://127.0.0.1:9000", True), "k")
        == "http://127.0.0.1:9000/acme-media/k"
    )
    assert (
        object_url(_bucket("https://store.example:8443"), "k")
        == "https://acme-media.store.example:8443/k"
    )


def test_upload_url_signs_type_and_length() -> None:
    headers = {"Content-Type": "image/png", "Content-Length": "42"}
    before = time.time()
    signed = presign(_bucket(), KEYS, "PUT", "a/b.png", 300, headers=headers)
    query = parse_qs(urlsplit(signed.url).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/") and query["X-Amz-Credential"][
        0
    ].endswith("/eu-central-1/s3/aws4_request")
    assert query["X-Amz-Expires"] == ["300"] and len(query["X-Amz-Signature"][0]) == 64
    assert "s3cr3t" not in signed.url
    expires = time.mktime(time.strptime(signed.expires_at, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before + 298 <= expires <= time.time() + 300
    assert signed.headers == headers and signed.method == "PUT"


@pytest.mark.parametrize("path_style", [False, True])
def test_the_crt_signature_is_botocores(monkeypatch: pytest.MonkeyPatch, path_style: bool) -> None:
    """The same URL as botocore's pure-Python signer for the same request and second: an
    independent implementation of SigV4 checks the key encoding and the signed headers."""
    from datetime import UTC, datetime

    import botocore.auth
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    bucket = _bucket("http://127.0.0.1:9000", path_style)
    key = "a b/ü+%=&?/~x.png"
    headers = {"Content-Type": "image/png", "Content-Length": "42"}
    ours = presign(bucket, KEYS, "PUT", key, 300, headers=headers, query={"uploadId": "u/1 +"})
    signed_at = parse_qs(urlsplit(ours.url).query)["X-Amz-Date"][0]
    when = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda **_: when)
    request = AWSRequest("PUT", object_url(bucket, key), headers=headers)
    request.params = {"uploadId": "u/1 +"}
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "s3cr3t-value", None)
    S3SigV4QueryAuth(credentials, "s3", "eu-central-1", expires=300).add_auth(request)
    theirs = parse_qs(urlsplit(request.url).query)
    assert parse_qs(urlsplit(ours.url).query) == theirs
    assert ours.url.split("?")[0] == request.url.split("?")[0]


def test_signing_configs_are_reused_within_their_second_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signer builds a config once per second for each keys, region and lifetime: a URL
    never carries another lifetime's expiry, another region's scope or another second's date."""
    now = [1_800_000_000.25]
    monkeypatch.setattr(time, "time", lambda: now[0])
    keys = parse_credentials(b'{"accessKeyId": "AKIDMEMO", "secretAccessKey": "memo-secret"}')

    def signed(expires_in: int, bucket: Bucket | None = None) -> dict[str, list[str]]:
        url = presign(bucket or _bucket(), keys, "GET", "k", expires_in)
        return {**parse_qs(urlsplit(url.url).query), "expiresAt": [url.expires_at]}

    first, short = signed(300), signed(60)
    assert first["X-Amz-Date"] == short["X-Amz-Date"] == ["20270115T080000Z"]
    assert first["X-Amz-Expires"] == ["300"] and short["X-Amz-Expires"] == ["60"]
    assert first["expiresAt"] == ["2027-01-15T08:05:00Z"]
    assert short["expiresAt"] == ["2027-01-15T08:01:00Z"]
    other = Bucket.from_compiled("m", {"bucket": "b", "region": "us-west-2", "credentials": "S3"})
    assert "/us-west-2/s3/" in signed(300, other)["X-Amz-Credential"][0]
    assert signed(300) == first  # same second: the same signature
    now[0] += 1
    later = signed(300)
    assert later["X-Amz-Date"] == ["20270115T080001Z"]
    assert later["expiresAt"] == ["2027-01-15T08:05:01Z"]
    assert later["X-Amz-Signature"] != first["X-Amz-Signature"]


def test_part_url_and_session_token() -> None:
    keys = parse_credentials(
        '{"accessKeyId": "ASIA1", "secretAccessKey": "s", "sessionToken": "tok/en+"}'
    )
    signed = presign(_bucket(), keys, "PUT", "k", 60, query={"partNumber": "3", "uploadId": "u/1"})
    query = parse_qs(urlsplit(signed.url).query)
    assert query["partNumber"] == ["3"] and query["uploadId"] == ["u/1"]
    assert query["X-Amz-Security-Token"] == ["tok/en+"]
    assert query["X-Amz-SignedHeaders"] == ["host"]


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"nope",
        b"[1]",
        b'{"accessKeyId": "a"}',
        b'{"accessKeyId": 1, "secretAccessKey": "b"}',
        b'{"accessKeyId": "a", "secretAccessKey": "b", "sessionToken": 5}',
        b'{"accessKeyId": "a", "secretAccessKey": "b", "region": "x"}',
    ],
)
def test_malformed_secrets(value: bytes) -> None:
    with pytest.raises(CredentialsUnavailable) as error:
        parse_credentials(value)
    assert error.value.message == UNAVAILABLE and error.value.status == 503
    assert error.value.reason


def test_credentials_never_show_secrets() -> None:
    keys = parse_credentials(
        '{"accessKeyId": "AK", "secretAccessKey": "SECRET-1", "sessionToken": "TOKEN-1"}'
    )
    assert "SECRET-1" not in repr(keys) and "TOKEN-1" not in repr(keys) and "AK" in repr(keys)


TENANT = Tenant("shop", "prod")


async def test_sessions_are_scoped_and_expire() -> None:
    now = [1_000_000.0]
    sessions = MultipartSessions(open_kv("memory://"), clock=lambda: now[0])
    await sessions.open(TENANT, "media", "a/b", MultipartSession("u1", "text/plain", 10, now[0]))
    assert (await sessions.find(TENANT, "media", "a/b", "u1")).content_length == 10
    for tenant, bucket, key, upload in (
        (Tenant("shop", "dev"), "media", "a/b", "u1"),
        (Tenant("other", "prod"), "media", "a/b", "u1"),
        (TENANT, "docs", "a/b", "u1"),
        (TENANT, "media", "a/c", "u1"),
        (TENANT, "media", "a/b", "u2"),
    ):
        with pytest.raises(BadRequest):
            await sessions.find(tenant, bucket, key, upload)
    now[0] += SESSION_TTL - 1
    await sessions.find(TENANT, "media", "a/b", "u1")
    now[0] += 1
    with pytest.raises(BadRequest):
        await sessions.find(TENANT, "media", "a/b", "u1")


async def test_concurrent_sessions_of_one_key_are_all_kept(redis_url: str) -> None:
    kvs = [open_kv(redis_url) for _ in range(8)]
    try:
        stores = [MultipartSessions(kv) for kv in kvs]
        await asyncio.gather(
            *(
                s.open(TENANT, "media", "k", MultipartSession(f"u{i}", "a/b", i, time.time()))
                for i, s in enumerate(stores)
            )
        )
        for i in range(8):
            assert (await stores[0].find(TENANT, "media", "k", f"u{i}")).content_length == i
        await asyncio.gather(
            *(s.close(TENANT, "media", "k", f"u{i}") for i, s in enumerate(stores))
        )
        assert await kvs[0].keys("storage:multipart:") == []
    finally:
        for kv in kvs:
            await kv.close()
