"""`config/storage.yaml` compiled at publish: canonical output, every problem with its line."""
# ruff: noqa: E501  (YAML fixtures and expected messages read best on one line each)

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tenancy.releases.compile.sources import Problems
from tenancy.storage.compile import STORAGE_FILE, compile_storage, parse_size

SPEC_EXAMPLE = """\
buckets:
  media:
    provider: s3
    bucket: acme-media-prod
    region: eu-central-1
    endpoint: https://s3.eu-central-1.amazonaws.com
    credentials: S3_MEDIA
    pathStyle: false
policies:
  "avatars/{userId}/*":
    upload_sign:   {roles: [authenticated], condition: "path.userId == request.auth.sub", maxSize: 5MB, allowedTypes: [image/png, image/jpeg]}
    download_sign: {roles: [public]}
    delete:        {roles: [authenticated], condition: "path.userId == request.auth.sub"}
  "docs/*":
    download_sign: {roles: [admin]}
"""


def _compile(text: str | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    problems = Problems()
    out = compile_storage(STORAGE_FILE, text, problems)
    return out, problems.items


def _messages(text: str) -> list[tuple[int | None, str]]:
    _, problems = _compile(text)
    assert all(p["file"] == STORAGE_FILE for p in problems)
    return [(p.get("line"), p["message"]) for p in problems]


def test_spec_example_compiles_to_canonical_json() -> None:
    out, problems = _compile(SPEC_EXAMPLE)
    assert problems == []
    assert out == {
        "buckets": {
            "media": {
                "provider": "s3",
                "bucket": "acme-media-prod",
                "region": "eu-central-1",
                "endpoint": "https://s3.eu-central-1.amazonaws.com",
                "credentials": "S3_MEDIA",
                "pathStyle": False,
            }
        },
        "policies": [
            {
                "pattern": "avatars/{userId}/*",
                "rules": {
                    "upload_sign": [
                        {
                            "roles": ["authenticated"],
                            "condition": "path.userId == request.auth.sub",
                            "maxSize": 5 * 1024 * 1024,
                            "allowedTypes": ["image/jpeg", "image/png"],
                        }
                    ],
                    "download_sign": [{"roles": ["public"], "condition": None}],
                    "delete": [
                        {"roles": ["authenticated"], "condition": "path.userId == request.auth.sub"}
                    ],
                },
            },
            {
                "pattern": "docs/*",
                "rules": {"download_sign": [{"roles": ["admin"], "condition": None}]},
            },
        ],
    }
    orjson.dumps(out)  # JSON-able, for the release


def test_no_file_means_no_storage_and_declaration_order_is_kept() -> None:
    assert _compile(None) == (None, [])
    out, _ = _compile('policies:\n  "z/*": {}\n  "a/*": {}\n  "m/*": {}\n')
    assert out is not None
    assert [p["pattern"] for p in out["policies"]] == ["z/*", "a/*", "m/*"]


def test_lists_of_rules_are_accepted_in_order() -> None:
    out, problems = _compile(
        'policies:\n  "f/*":\n    upload_sign:\n      - {roles: [admin]}\n'
        "      - {roles: [authenticated], maxSize: 1KB}\n"
    )
    assert problems == []
    assert out is not None
    rules = out["policies"][0]["rules"]["upload_sign"]
    assert [r["roles"] for r in rules] == [["admin"], ["authenticated"]]
    assert [r["maxSize"] for r in rules] == [None, 1024]


@pytest.mark.parametrize(
    ("text", "size"),
    [("1B", 1), ("512KB", 512 * 1024), ("5MB", 5 * 1024**2), ("2GB", 2 * 1024**3), (100, 100)],
)
def test_sizes_are_1024_based(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0B", "5 TB", "1.5MB", "-1KB", "MB", "5mb", True, 0, 6 * 1024**4])
def test_bad_sizes(text: object) -> None:
    assert parse_size(text) is None


def test_every_problem_at_once_with_its_line() -> None:
    text = """\
buckets:
  media:
    provider: gcs
    bucket: Not_A_Bucket
    region: eu central
    endpoint: https://s3.example.com/path
    credentials: "not a name"
    pathStyle: "yes"
    colour: blue
  other: nope
  Bad!: {provider: s3, bucket: abc, region: r, credentials: S}
  lean: {provider: s3}
policies:
  "/abs/*": {download_sign: {roles: [public]}}
  "a//b": {download_sign: {roles: [public]}}
  "a/../b": {download_sign: {roles: [public]}}
  "u/{id}x/*": {download_sign: {roles: [public]}}
  "u/{id}/{id}": {download_sign: {roles: [public]}}
  "c/*":
    multipart_create: {roles: [public]}
    rename: {roles: [public]}
    download_sign: {roles: [public], maxSize: 5MB, allowedTypes: [image/png]}
    delete: {roles: []}
  "d/{userId}":
    upload_sign: {roles: [user], maxSize: 5XB, allowedTypes: [image, "text/*"], colour: red}
    download_sign: {roles: [user], condition: "path.userID == request.auth.sub"}
    delete: {roles: [user], condition: "request.auth.usr == 'x'"}
  "e/*":
    download_sign: {roles: [user], condition: "resource.owner == request.auth.sub"}
    delete: {roles: [user], condition: "request.auth.sub =="}
    upload_sign: {roles: [user], condition: "request.params.size > 1 || user.x"}
  "f/*": [not, a, mapping]
"""
    assert sorted(_messages(text)) == sorted([
        (3, "bucket 'media': `provider` must be one of: s3"),
        (4, "bucket 'media': `bucket` must be a valid S3 bucket name"),
        (5, "bucket 'media': `region` must be a region name like eu-central-1"),
        (7, "bucket 'media': `credentials` must name a tenant secret (e.g. S3_MEDIA)"),
        (6, "bucket 'media': `endpoint` must be http(s)://host[:port], nothing after"),
        (8, "bucket 'media': `pathStyle` must be true or false"),
        (9, "unknown key 'colour' in bucket 'media' (expected: provider, bucket, region, endpoint, credentials, pathStyle)"),
        (10, "bucket 'other' must be a mapping"),
        (11, "invalid bucket name 'Bad!' (a lower-case letter, then a-z 0-9 _ -)"),
        (12, "bucket 'lean': `bucket` is required"),
        (12, "bucket 'lean': `region` is required"),
        (12, "bucket 'lean': `credentials` is required"),
        (14, "policy pattern '/abs/*': must be 1 to 1024 bytes and not start with '/'"),
        (14, "policy pattern '/abs/*': has an empty segment"),
        (15, "policy pattern 'a//b': has an empty segment"),
        (16, "policy pattern 'a/../b': has a '..' segment"),
        (17, "policy pattern 'u/{id}x/*': a {var} must be a whole segment like {userId}"),
        (18, "policy pattern 'u/{id}/{id}': {id} is bound twice"),
        (20, "policy 'c/*': multipart_create uses upload_sign's rule"),
        (20, "unknown key 'multipart_create' in policy 'c/*' (expected: upload_sign, download_sign, delete)"),
        (21, "unknown key 'rename' in policy 'c/*' (expected: upload_sign, download_sign, delete)"),
        (22, "c/* download_sign: `maxSize` applies to upload_sign only"),
        (22, "c/* download_sign: `allowedTypes` applies to upload_sign only"),
        (23, "c/* delete: `roles` must be a non-empty list of role names"),
        (25, "unknown key 'colour' in rule of 'd/{userId} upload_sign' (expected: roles, condition, maxSize, allowedTypes)"),
        (25, "d/{userId} upload_sign: `maxSize` must be a size like 512KB or 5MB (B, KB, MB, GB; up to 5 TiB)"),
        (25, "d/{userId} upload_sign: invalid media type 'image' (type/subtype or type/*)"),
        (26, "d/{userId} download_sign: unknown field 'path.userID' (bound here: userId)"),
        (27, "d/{userId} delete: unknown field 'request.auth.usr' (use sub, roles or type)"),
        (29, "e/* download_sign: unsupported condition: resource.* is not available here"),
        (30, "e/* delete: invalid CEL condition: <input>:1:20: Syntax error: mismatched input '<EOF>'"),
        (31, "e/* upload_sign: condition uses undeclared param 'size'"),
        (31, "e/* upload_sign: unknown variable 'user' in condition (use request.* or path.*)"),
        (32, "policy 'f/*' must be a mapping of op → rule"),
    ])  # fmt: skip


def test_conditions_may_use_path_and_params_of_their_ops() -> None:
    text = """\
policies:
  "u/{userId}/*":
    upload_sign: {roles: [user], condition: "path.userId == request.auth.sub && request.params.contentLength < 100 && has(request.params.uploadId) == false"}
    download_sign: {roles: [user], condition: "'path.nope' != path.userId && request.params.expiresIn > 5"}
"""
    out, problems = _compile(text)
    assert problems == []
    assert out is not None


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", "buckets: [a]\npolicies: 3\n", "unknown: 1\n", "buckets:\n  a: {\n"],
)
def test_malformed_files_are_problems_not_crashes(text: str) -> None:
    _, problems = _compile(text)
    assert problems
