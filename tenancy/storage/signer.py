"""Signed URLs: SigV4 query signatures by AWS's CRT signer, computed locally (docs/storage.md).

`awscrt.auth.aws_sign_request` (AWS's native signing library, the one botocore itself signs with
when installed as `botocore[crt]`) computes the signature; only the object URL is put together
here, the way botocore's S3 serializer does it (key percent-encoded, `/` and `~` kept). It costs
about a third of botocore's pure-Python `S3SigV4QueryAuth` for the same URL, and signing is on the
request path (docs/decisions.md). Every header given is signed, so an upload URL binds
Content-Type and Content-Length.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from awscrt.auth import (
    AwsSignatureType,
    AwsSignedBodyValue,
    AwsSigningAlgorithm,
    AwsSigningConfig,
    aws_sign_request,
)
from awscrt.http import HttpHeaders, HttpRequest

from tenancy.storage.credentials import StoreCredentials
from tenancy.storage.model import Bucket

# Distinct (region, lifetime) configs kept per set of keys before the memo starts over.
_MEMO_MAX = 64


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    method: str
    expires_at: str  # ISO 8601 UTC, whole seconds
    headers: Mapping[str, str] = field(default_factory=dict)


def object_path(bucket: Bucket, key: str) -> str:
    """`/<key>`, or `/<bucket>/<key>` with pathStyle; the key percent-encoded."""
    return bucket.path_prefix + "/" + quote(key, safe="/~")


def object_url(bucket: Bucket, key: str) -> str:
    """`https://<bucket>.<host>/<key>`, or `<endpoint>/<bucket>/<key>` with pathStyle."""
    return bucket.origin + object_path(bucket, key)


def presign(
    bucket: Bucket,
    credentials: StoreCredentials,
    method: str,
    key: str,
    expires_in: int,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> SignedUrl:
    """A URL valid for `expires_in` seconds that the store accepts for exactly this request."""
    path = object_path(bucket, key)
    if query:
        path += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    signed_headers = dict(headers or {})
    request = HttpRequest(
        method, path, HttpHeaders([("Host", bucket.host), *signed_headers.items()])
    )
    config, expires_at = _config(credentials, bucket.region, expires_in)
    # Static credentials: the signing completes inside the call, the future is already done.
    aws_sign_request(request, config).result()
    return SignedUrl(bucket.origin + request.path, method, expires_at, signed_headers)


def _config(
    credentials: StoreCredentials, region: str, expires_in: int
) -> tuple[AwsSigningConfig, str]:
    """The signing config and expiry of this second (SigV4 dates are whole seconds), built once
    per second for each (keys, region, lifetime): every URL signed within that second shares
    them (docs/decisions.md, storage)."""
    now = int(time.time())
    memo = credentials.configs
    found = memo.get((region, expires_in))
    if found is not None and found[0] == now:
        return found[1], found[2]
    config = AwsSigningConfig(
        algorithm=AwsSigningAlgorithm.V4,
        signature_type=AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=credentials.signing,
        region=region,
        service="s3",
        date=datetime.fromtimestamp(now, UTC),
        use_double_uri_encode=False,  # S3's rules: the path is encoded once, not normalized
        should_normalize_uri_path=False,
        signed_body_value=AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        expiration_in_seconds=expires_in,
    )
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + expires_in))
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[region, expires_in] = (now, config, expires_at)
    return config, expires_at
