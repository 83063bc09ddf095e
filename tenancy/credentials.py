"""Credential formats (`docs/security.md`): API keys `stk_<keyId>.<secret>` and scoped admin
tokens `stka_<tokenId>.<secret>`; only the secret's hash is kept for either."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

KEY_PREFIX = "stk_"
ADMIN_TOKEN_PREFIX = "stka_"
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_ID_LENGTH = 16
_SECRET_BYTES = 32
# 32 bytes in unpadded base64url are exactly 43 characters.
_BODY = r"([a-z0-9]{16})\.([A-Za-z0-9_-]{43})"
_API_KEY = re.compile(re.escape(KEY_PREFIX) + _BODY)
_ADMIN_TOKEN = re.compile(re.escape(ADMIN_TOKEN_PREFIX) + _BODY)
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, repr=False)
class NewApiKey:
    """`api_key` is shown once to the creator; only `key_id` and `secret_hash` are stored."""

    key_id: str
    api_key: str
    secret_hash: str

    def __repr__(self) -> str:
        return f"NewApiKey(key_id={self.key_id!r}, api_key=<hidden>)"


def new_api_key(prefix: str = KEY_PREFIX) -> NewApiKey:
    """A new credential: an API key, or with `ADMIN_TOKEN_PREFIX` a scoped admin token."""
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(_KEY_ID_LENGTH))
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewApiKey(key_id, f"{prefix}{key_id}.{secret}", hash_secret(secret))


def parse_api_key(text: str) -> tuple[str, str] | None:
    """`(key_id, secret)`, or None when `text` is not exactly an API key."""
    match = _API_KEY.fullmatch(text)
    return (match[1], match[2]) if match else None


def parse_admin_token(text: str) -> tuple[str, str] | None:
    """`(token_id, secret)`, or None when `text` is not exactly a scoped admin token."""
    match = _ADMIN_TOKEN.fullmatch(text)
    return (match[1], match[2]) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def stored_digest(secret_hash: str) -> bytes:
    """The stored hash as the bytes `secret_matches` compares (decoded once per cached key); a
    stored value that is not what `hash_secret` writes matches no secret."""
    return bytes.fromhex(secret_hash) if _HASH.fullmatch(secret_hash) else b""


def secret_matches(secret: str, digest: bytes) -> bool:
    """Constant-time, so response timing does not reveal how much of a guess was right."""
    return hmac.compare_digest(hashlib.sha256(secret.encode()).digest(), digest)
