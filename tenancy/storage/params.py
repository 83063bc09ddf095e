"""The seven storage ops and their params, checked into one typed value (docs/storage.md).

Every missing, unknown or malformed param is a 400 before anything else happens; what reaches
the policy check and the signer is a `StorageRequest` whose fields are already valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenancy.errors import BadRequest, NotFound
from tenancy.storage.keys import check_key

KIB = 1024
SINGLE_PUT_MAX = 5 * KIB**3  # S3's limit for one PUT; larger objects go multipart
OBJECT_MAX = 5 * KIB**4  # S3's limit for one object
MAX_PARTS = 10_000
# (default, maximum) lifetime in seconds of each kind of signed URL (rule 6).
UPLOAD_LIFETIME = (300, 900)
DOWNLOAD_LIFETIME = (60, 300)

# op → (required params, optional params)
PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "upload_sign": (("key", "contentType", "contentLength"), ("expiresIn",)),
    "download_sign": (("key",), ("expiresIn",)),
    "delete": (("key",), ()),
    "multipart_create": (("key", "contentType", "contentLength"), ()),
    "multipart_sign_part": (("key", "uploadId", "partNumber"), ("expiresIn",)),
    "multipart_complete": (("key", "uploadId", "parts"), ()),
    "multipart_abort": (("key", "uploadId"), ()),
}
OPS = tuple(PARAMS)
POLICY_OPS = ("upload_sign", "download_sign", "delete")  # the ops a policy names (rule 4)


def rule_op(op: str) -> str:
    """The policy op whose rule governs `op`: the multipart ops use `upload_sign`'s."""
    return "upload_sign" if op.startswith("multipart_") else op


def params_of_rule(op: str) -> frozenset[str]:
    """Every `request.params.*` a condition of `op`'s rule may read."""
    return frozenset(
        name
        for each, (required, optional) in PARAMS.items()
        if rule_op(each) == op
        for name in required + optional
    )


_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}(?:\s*;[\x20-\x7e]*)?$")
_UPLOAD_ID = re.compile(r"^[\x21-\x7e]{1,1024}$")
_ETAG = re.compile(r'^"?[\x21\x23-\x7e]{1,256}"?$')


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str


@dataclass(frozen=True, slots=True)
class StorageRequest:
    """One checked storage call. Fields an op does not take keep their defaults."""

    op: str
    key: str
    content_type: str | None = None
    content_length: int | None = None
    expires_in: int = 0
    upload_id: str | None = None
    part_number: int | None = None
    parts: tuple[Part, ...] = ()

    @property
    def media_type(self) -> str | None:
        """`type/subtype` in lower case, without parameters (what `allowedTypes` compares)."""
        if self.content_type is None:
            return None
        return self.content_type.split(";", 1)[0].strip().lower()


def parse_request(op: str, params: Mapping[str, Any]) -> StorageRequest:
    """Check `params` for `op`; NotFound for an unknown op, BadRequest for any bad param."""
    spec = PARAMS.get(op)
    if spec is None:
        raise NotFound(f"Unknown storage op '{op}'")
    required, optional = spec
    for name in params:
        if name not in required and name not in optional:
            raise BadRequest(f"Unknown param '{name}' for {op}")
    for name in required:
        if name not in params:
            raise BadRequest(f"Missing param '{name}'")
    fields: dict[str, Any] = {"op": op, "key": check_key(params["key"])}
    if "contentType" in params:
        fields["content_type"] = _content_type(params["contentType"])
    if "contentLength" in params:
        limit = SINGLE_PUT_MAX if op == "upload_sign" else OBJECT_MAX
        fields["content_length"] = _int(params, "contentLength", 0, limit)
    if op in ("upload_sign", "multipart_sign_part", "download_sign"):
        default, maximum = DOWNLOAD_LIFETIME if op == "download_sign" else UPLOAD_LIFETIME
        fields["expires_in"] = _int(params, "expiresIn", 1, maximum, default)
    if "uploadId" in params:
        fields["upload_id"] = _text(params, "uploadId", _UPLOAD_ID)
    if "partNumber" in params:
        fields["part_number"] = _int(params, "partNumber", 1, MAX_PARTS)
    if "parts" in params:
        fields["parts"] = _parts(params["parts"])
    return StorageRequest(**fields)


def _int(params: Mapping[str, Any], name: str, low: int, high: int, default: int = 0) -> int:
    value = params.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise BadRequest(f"Invalid param '{name}': must be an integer from {low} to {high}")
    return value


def _text(params: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = params[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadRequest(f"Invalid param '{name}'")
    return value


def _content_type(value: object) -> str:
    if not isinstance(value, str) or len(value) > 255 or not _CONTENT_TYPE.fullmatch(value):
        raise BadRequest("Invalid param 'contentType': must be a media type like image/png")
    return value


def _parts(value: object) -> tuple[Part, ...]:
    message = (
        "Invalid param 'parts': must be 1 to 10000 objects {partNumber, etag} "
        "in ascending partNumber order"
    )
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PARTS:
        raise BadRequest(message)
    parts: list[Part] = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"partNumber", "etag"}:
            raise BadRequest(message)
        number, etag = item["partNumber"], item["etag"]
        if type(number) is not int or not 1 <= number <= MAX_PARTS:
            raise BadRequest(message)
        if parts and number <= parts[-1].number:
            raise BadRequest(message)
        if not isinstance(etag, str) or not _ETAG.fullmatch(etag):
            raise BadRequest("Invalid param 'parts': an etag is not valid")
        parts.append(Part(number, etag))
    return tuple(parts)
