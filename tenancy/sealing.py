"""Secret values encrypted under a project's data key (envelope encryption, `docs/security.md`).

The associated data binds each ciphertext to its project, env, name and version, so a value
copied to another place, or an older ciphertext put back under the current version, fails
authentication instead of decrypting there (`docs/security.md`). Secret values carry the `v2.`
prefix; `v1.` (the format without the version, and the key wrapping format of
`tenancy/keyring.py`) is opened only by migration 0004, which re-seals it.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1."
_SECRET_PREFIX = "v2."
_NONCE_BYTES = 12
_TAG_BYTES = 16
_DEK_BYTES = 32


class SealError(Exception):
    """A value could not be sealed or unsealed; the message never contains secret material."""


def _encrypt(aead: AESGCM, aad: bytes, plaintext: bytes, prefix: str = _PREFIX) -> str:
    """Shared by sealing and key wrapping: one stored layout, `<prefix><b64url(nonce||ct||tag)>`;
    the prefix names what the associated data holds."""
    nonce = os.urandom(_NONCE_BYTES)
    blob = nonce + aead.encrypt(nonce, plaintext, aad)
    return prefix + base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def _decrypt(aead: AESGCM, aad: bytes, token: str, prefix: str = _PREFIX) -> bytes:
    """Inverse of `_encrypt`. Raises ValueError with a reason that is safe to show."""
    if not token.startswith(prefix):
        raise ValueError(f"unknown format (expected {prefix!r} prefix)")
    body = token[len(prefix) :]
    try:
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise ValueError("malformed base64url payload") from None
    # urlsafe_b64decode skips stray characters; insist on the one canonical spelling.
    if base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii") != body:
        raise ValueError("malformed base64url payload")
    if len(blob) < _NONCE_BYTES + _TAG_BYTES:
        raise ValueError("payload too short")
    try:
        return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise ValueError("authentication failed (wrong key or moved ciphertext)") from None


def _secret_aead(dek: bytes, project: str, env: str) -> AESGCM:
    if len(dek) != _DEK_BYTES:
        raise SealError("data key must be 32 bytes")
    # ':' separates the associated-data fields; only the last one (name) may contain it.
    if ":" in project or ":" in env:
        raise SealError("project and env must not contain ':'")
    return AESGCM(dek)


def _secret_aad(project: str, env: str, name: str, version: int) -> bytes:
    return f"stk:secret:v2:{project}:{env}:{version}:{name}".encode()


def seal(dek: bytes, project: str, env: str, name: str, version: int, plaintext: bytes) -> str:
    aead = _secret_aead(dek, project, env)
    return _encrypt(aead, _secret_aad(project, env, name, version), plaintext, _SECRET_PREFIX)


def unseal(dek: bytes, project: str, env: str, name: str, version: int, token: str) -> bytes:
    aead = _secret_aead(dek, project, env)
    if token.startswith(_PREFIX):
        raise SealError(
            f"cannot unseal secret {name!r}: sealed without its version; run `stk-bridge migrate`"
        )
    try:
        return _decrypt(aead, _secret_aad(project, env, name, version), token, _SECRET_PREFIX)
    except ValueError as exc:
        raise SealError(f"cannot unseal secret {name!r}: {exc}") from None


def unseal_v1(dek: bytes, project: str, env: str, name: str, token: str) -> bytes:
    """A value sealed before versions were bound in: read once by migration 0004 to re-seal."""
    aead = _secret_aead(dek, project, env)
    try:
        return _decrypt(aead, f"stk:secret:v1:{project}:{env}:{name}".encode(), token)
    except ValueError as exc:
        raise SealError(f"cannot unseal secret {name!r}: {exc}") from None
