"""A tenant's object-store keys, read from the tenant secret a bucket names (docs/storage.md).

The secret holds JSON `{"accessKeyId", "secretAccessKey", "sessionToken"?}`. A missing or
malformed secret gives the same 503 to callers ("Storage credentials unavailable"): what is wrong
with an operator's secret is for the operator's log, never for an API answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from awscrt.auth import AwsCredentialsProvider

from tenancy.errors import ServiceUnavailable

UNAVAILABLE = "Storage credentials unavailable"


class CredentialsUnavailable(ServiceUnavailable):
    """503 to the caller; `reason` (never a secret value) is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(UNAVAILABLE)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoreCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    # What the signer takes (`tenancy.storage.signer`), built once per secret version.
    signing: AwsCredentialsProvider = field(init=False, repr=False, compare=False)
    # The signer's memo: signing configs of the current second, by (region, lifetime).
    configs: dict[tuple[str, int], Any] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        provider = AwsCredentialsProvider.new_static(
            self.access_key_id, self.secret_access_key, self.session_token
        )
        object.__setattr__(self, "signing", provider)


def parse_credentials(value: bytes | str) -> StoreCredentials:
    """The keys in a secret's value; CredentialsUnavailable when it is not the expected JSON."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise CredentialsUnavailable("the storage secret is not JSON") from None
    if not isinstance(doc, dict):
        raise CredentialsUnavailable("the storage secret is not a JSON object")
    unknown = set(doc) - {"accessKeyId", "secretAccessKey", "sessionToken"}
    if unknown:
        raise CredentialsUnavailable(f"the storage secret has unknown fields {sorted(unknown)}")
    key, secret, token = doc.get("accessKeyId"), doc.get("secretAccessKey"), doc.get("sessionToken")
    if not (isinstance(key, str) and key and isinstance(secret, str) and secret):
        raise CredentialsUnavailable("the storage secret needs accessKeyId and secretAccessKey")
    if token is not None and not (isinstance(token, str) and token):
        raise CredentialsUnavailable("the storage secret's sessionToken must be a string")
    return StoreCredentials(key, secret, token)
