"""Keys, params, policy matching and the 400/401/403 rules of storage calls (pure)."""
# ruff: noqa: E501  (YAML fixtures and expected messages read best on one line each)

from __future__ import annotations

from typing import Any

import pytest

from tenancy.errors import BadRequest, Forbidden, NotFound, StkError, Unauthorized
from tenancy.principal import ANONYMOUS, Principal
from tenancy.releases.compile.sources import Problems
from tenancy.storage.access import authorize
from tenancy.storage.compile import compile_storage
from tenancy.storage.keys import check_key
from tenancy.storage.model import StorageModel
from tenancy.storage.params import StorageRequest, parse_request

ALICE = Principal("user", "alice", frozenset({"public", "authenticated"}))
ADMIN = Principal("user", "root", frozenset({"public", "authenticated", "admin"}))
FILE = """\
buckets:
  media: {provider: s3, bucket: acme-media, region: eu-central-1, credentials: S3_MEDIA}
policies:
  "avatars/{userId}/*":
    upload_sign: {roles: [authenticated], condition: "path.userId == request.auth.sub", maxSize: 1KB, allowedTypes: [image/png, "text/*"]}
    download_sign: {roles: [public]}
    delete: {roles: [authenticated], condition: "path.userId == request.auth.sub"}
  "avatars/admin/*":
    download_sign: {roles: [admin]}
  "avatars/*/*":
    delete: {roles: [admin]}
  "docs/*":
    download_sign: {roles: [admin]}
  "reports/*.pdf":
    download_sign: {roles: [authenticated]}
  "reports/q*.pdf":
    download_sign: {roles: [admin]}
  "open/*":
    upload_sign: [{roles: [admin], maxSize: 1GB}, {roles: [public], maxSize: 10B}]
"""


@pytest.fixture(scope="module")
def model() -> StorageModel:
    problems = Problems()
    doc = compile_storage("config/storage.yaml", FILE, problems)
    assert problems.items == []
    return StorageModel.from_compiled(doc)


def _authorize(model: StorageModel, who: Principal, op: str, **params: Any) -> StorageRequest:
    request = parse_request(op, params)
    authorize(model, request, who, params)
    return request


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "a/b/c.png", "dir/ünïcode ✓.txt", "x" * 1024, "é" * 512, "a b/c+d=e&f?g#h", "..a/b.."],
)
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "1 to 1024 bytes"),
        ("x" * 1025, "1 to 1024 bytes"),
        ("é" * 513, "1 to 1024 bytes"),
        ("/a", "start with '/'"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a/../b", "'..' segment"),
        ("..", "'..' segment"),
        ("a/./b", "'.' segment"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),
        ("\ud800", "UTF-8"),
        (5, "string"),
        (None, "string"),
    ],
)
def test_invalid_keys_are_400(key: object, why: str) -> None:
    with pytest.raises(BadRequest, match="Invalid param 'key'") as error:
        check_key(key)
    assert why in error.value.message


# --- params ----------------------------------------------------------------------------------


def test_params_are_checked_per_op() -> None:
    upload = parse_request(
        "upload_sign", {"key": "k", "contentType": "Text/Plain; charset=utf-8", "contentLength": 3}
    )
    assert (upload.expires_in, upload.media_type, upload.content_length) == (300, "text/plain", 3)
    assert parse_request("download_sign", {"key": "k"}).expires_in == 60
    assert parse_request("download_sign", {"key": "k", "expiresIn": 300}).expires_in == 300
    part = parse_request(
        "multipart_sign_part", {"key": "k", "uploadId": "u-1", "partNumber": 10000}
    )
    assert (part.part_number, part.expires_in) == (10000, 300)
    done = parse_request(
        "multipart_complete",
        {"key": "k", "uploadId": "u", "parts": [{"partNumber": 1, "etag": '"e1"'}, {"partNumber": 3, "etag": "e3"}]},
    )  # fmt: skip
    assert [(p.number, p.etag) for p in done.parts] == [(1, '"e1"'), (3, "e3")]


UP = {"key": "k", "contentType": "image/png", "contentLength": 10}


@pytest.mark.parametrize(
    ("op", "params", "message"),
    [
        ("upload_sign", {"key": "k", "contentType": "image/png"}, "Missing param 'contentLength'"),
        ("upload_sign", {**UP, "colour": 1}, "Unknown param 'colour'"),
        ("upload_sign", {**UP, "expiresIn": 0}, "'expiresIn'"),
        ("upload_sign", {**UP, "expiresIn": 901}, "'expiresIn'"),
        ("upload_sign", {**UP, "expiresIn": "60"}, "'expiresIn'"),
        ("upload_sign", {**UP, "expiresIn": True}, "'expiresIn'"),
        ("upload_sign", {**UP, "contentLength": -1}, "'contentLength'"),
        ("upload_sign", {**UP, "contentLength": 5 * 1024**3 + 1}, "'contentLength'"),
        ("upload_sign", {**UP, "contentLength": 1.5}, "'contentLength'"),
        ("upload_sign", {**UP, "contentType": "png"}, "'contentType'"),
        ("upload_sign", {**UP, "contentType": "image/png\r\nX-Evil: 1"}, "'contentType'"),
        ("upload_sign", {**UP, "key": "a/../b"}, "'key'"),
        ("download_sign", {"key": "k", "expiresIn": 301}, "'expiresIn'"),
        ("download_sign", {}, "Missing param 'key'"),
        ("delete", {"key": "k", "expiresIn": 5}, "Unknown param 'expiresIn'"),
        ("multipart_create", {"key": "k", "contentType": "a/b"}, "Missing param 'contentLength'"),
        ("multipart_sign_part", {"key": "k", "uploadId": "u", "partNumber": 0}, "'partNumber'"),
        ("multipart_sign_part", {"key": "k", "uploadId": "u", "partNumber": 10001}, "'partNumber'"),
        ("multipart_sign_part", {"key": "k", "uploadId": "", "partNumber": 1}, "'uploadId'"),
        ("multipart_sign_part", {"key": "k", "uploadId": "a b", "partNumber": 1}, "'uploadId'"),
        ("multipart_complete", {"key": "k", "uploadId": "u", "parts": []}, "'parts'"),
        ("multipart_complete", {"key": "k", "uploadId": "u", "parts": [{"partNumber": 1}]}, "'parts'"),
        ("multipart_complete", {"key": "k", "uploadId": "u", "parts": [{"partNumber": 2, "etag": "a"}, {"partNumber": 1, "etag": "b"}]}, "'parts'"),
        ("multipart_complete", {"key": "k", "uploadId": "u", "parts": [{"partNumber": 1, "etag": ""}]}, "'parts'"),
        ("multipart_complete", {"key": "k", "uploadId": "u", "parts": "1,2"}, "'parts'"),
        ("multipart_abort", {"key": "k"}, "Missing param 'uploadId'"),
    ],
)  # fmt: skip
def test_bad_params_are_400(op: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as error:
        parse_request(op, params)
    assert message in error.value.message


def test_unknown_bucket_is_404(model: StorageModel) -> None:
    with pytest.raises(NotFound, match="Unknown storage bucket 'films'"):
        model.bucket("films")
    assert model.bucket("media").endpoint == "https://s3.eu-central-1.amazonaws.com"


# --- policies --------------------------------------------------------------------------------


def _denied(model: StorageModel, who: Principal, op: str, **params: Any) -> StkError:
    with pytest.raises(StkError) as error:
        _authorize(model, who, op, **params)
    return error.value


def test_most_specific_policy_wins(model: StorageModel) -> None:
    # "avatars/admin/*" (1 wildcard) beats "avatars/{userId}/*" (2): only admins download there.
    assert isinstance(_denied(model, ALICE, "download_sign", key="avatars/admin/x"), Forbidden)
    _authorize(model, ADMIN, "download_sign", key="avatars/admin/x")
    _authorize(model, ANONYMOUS, "download_sign", key="avatars/alice/x")
    # Equal specificity: declaration order. "avatars/{userId}/*" comes before "avatars/*/*".
    assert isinstance(_denied(model, ADMIN, "delete", key="avatars/alice/x"), Forbidden)
    _authorize(model, ALICE, "delete", key="avatars/alice/x")
    # In-segment globs count as wildcards; both report patterns have one.
    _authorize(model, ALICE, "download_sign", key="reports/annual.pdf")
    _authorize(model, ALICE, "download_sign", key="reports/q1.pdf")  # first declared wins
    assert isinstance(_denied(model, ALICE, "download_sign", key="reports/a.txt"), Forbidden)


def test_no_match_is_403_even_for_anonymous(model: StorageModel) -> None:
    for key in ("other/x", "avatars/alice", "avatars/alice/x/y", "docs/a/b"):
        error = _denied(model, ANONYMOUS, "download_sign", key=key)
        assert (
            isinstance(error, Forbidden) and error.message == "No storage policy matches this key"
        )


def test_no_rule_for_the_op_is_403_for_everyone(model: StorageModel) -> None:
    for who in (ANONYMOUS, ALICE):
        error = _denied(model, who, "delete", key="docs/a")
        assert isinstance(error, Forbidden) and error.message == "No delete rule for this key"


def test_missing_role_is_401_anonymous_403_otherwise(model: StorageModel) -> None:
    assert isinstance(_denied(model, ANONYMOUS, "download_sign", key="docs/a"), Unauthorized)
    assert isinstance(_denied(model, ALICE, "download_sign", key="docs/a"), Forbidden)
    _authorize(model, ADMIN, "download_sign", key="docs/a")
    up = {"contentType": "image/png", "contentLength": 5}
    assert isinstance(
        _denied(model, ANONYMOUS, "upload_sign", key="avatars/alice/a", **up), Unauthorized
    )


def test_condition_binds_path_vars(model: StorageModel) -> None:
    up = {"contentType": "image/png", "contentLength": 5}
    _authorize(model, ALICE, "upload_sign", key="avatars/alice/me.png", **up)
    error = _denied(model, ALICE, "upload_sign", key="avatars/bob/me.png", **up)
    assert isinstance(error, Forbidden) and "Condition" in error.message


def test_multipart_ops_use_the_upload_rule(model: StorageModel) -> None:
    create = {"contentType": "image/png", "contentLength": 5}
    _authorize(model, ALICE, "multipart_create", key="avatars/alice/a", **create)
    _authorize(model, ALICE, "multipart_abort", key="avatars/alice/a", uploadId="u")
    assert isinstance(
        _denied(model, ALICE, "multipart_abort", key="avatars/bob/a", uploadId="u"), Forbidden
    )
    assert isinstance(
        _denied(model, ALICE, "multipart_sign_part", key="docs/a", uploadId="u", partNumber=1),
        Forbidden,
    )
    assert isinstance(_denied(model, ANONYMOUS, "multipart_complete", key="avatars/alice/a", uploadId="u", parts=[{"partNumber": 1, "etag": "e"}]), Unauthorized)  # fmt: skip


def test_size_and_type_limits_are_400_after_authorization(model: StorageModel) -> None:
    key = "avatars/alice/a"
    _authorize(model, ALICE, "upload_sign", key=key, contentType="image/png", contentLength=1024)
    _authorize(model, ALICE, "upload_sign", key=key, contentType="text/csv", contentLength=1)
    for ctype, length in (("image/png", 1025), ("image/gif", 1), ("application/pdf", 1)):
        error = _denied(
            model, ALICE, "upload_sign", key=key, contentType=ctype, contentLength=length
        )
        assert isinstance(error, BadRequest)
        error = _denied(
            model, ALICE, "multipart_create", key=key, contentType=ctype, contentLength=length
        )
        assert isinstance(error, BadRequest)
    # Someone who may not upload there learns nothing about the limits.
    error = _denied(
        model,
        ALICE,
        "upload_sign",
        key="avatars/bob/a",
        contentType="image/gif",
        contentLength=9999,
    )
    assert isinstance(error, Forbidden)


def test_first_rule_with_a_matching_role_applies(model: StorageModel) -> None:
    _authorize(model, ADMIN, "upload_sign", key="open/a", contentType="a/b", contentLength=10**6)
    error = _denied(model, ALICE, "upload_sign", key="open/a", contentType="a/b", contentLength=11)
    assert isinstance(error, BadRequest)
    _authorize(model, ANONYMOUS, "upload_sign", key="open/a", contentType="a/b", contentLength=10)


def test_a_release_without_storage_has_no_buckets() -> None:
    with pytest.raises(NotFound):
        StorageModel.from_compiled(None).bucket("media")
