"""Master keyring: wraps each project's data key (DEK) under a master key (`docs/security.md`).

The first entry is active for new wrapping; every entry still unwraps, which is what makes
master-key rotation possible without downtime.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenancy.sealing import _decrypt, _encrypt

_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_KEY_BYTES = 32
_DEK_BYTES = 32


class KeyringError(Exception):
    """Bad keyring or failed unwrap; the message never contains key material."""


def new_dek() -> bytes:
    return os.urandom(_DEK_BYTES)


def _decode_key(text: str) -> bytes:
    """Accept standard or urlsafe base64, padded or not, as operators paste either."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _dek_aad(project: str) -> bytes:
    return f"stk:dek:v1:{project}".encode()


class Keyring:
    """Only AESGCM objects are kept, never raw key bytes, so nothing here can echo a key."""

    __slots__ = ("_active_kid", "_aeads")

    def __init__(self, aeads: dict[str, AESGCM]) -> None:
        if not aeads:
            raise KeyringError("keyring is empty; create a key with `stk-bridge keys generate`")
        self._aeads = dict(aeads)
        self._active_kid = next(iter(aeads))

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Parse `kid:base64key` entries separated by commas and/or newlines."""
        aeads: dict[str, AESGCM] = {}
        entries = [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]
        for n, entry in enumerate(entries, start=1):
            kid, sep, encoded = (part.strip() for part in entry.partition(":"))
            if not sep:
                raise KeyringError(f"keyring entry {n} is not of the form 'kid:base64key'")
            if not _KID.fullmatch(kid):
                raise KeyringError(
                    f"keyring entry {n}: invalid kid (expected 1-32 characters of A-Za-z0-9_-)"
                )
            if kid in aeads:
                raise KeyringError(f"keyring entry {n}: duplicate kid {kid!r}")
            try:
                key = _decode_key(encoded)
            except ValueError:  # binascii.Error and non-ASCII input
                raise KeyringError(
                    f"keyring entry {n} ({kid!r}): key is not valid base64"
                ) from None
            if len(key) != _KEY_BYTES:
                raise KeyringError(
                    f"keyring entry {n} ({kid!r}): key must be {_KEY_BYTES} bytes, got {len(key)}"
                )
            aeads[kid] = AESGCM(key)
        return cls(aeads)

    @staticmethod
    def generate_entry(kid: str | None = None) -> str:
        """A fresh `kid:base64key` line; the default kid sorts by creation date."""
        if kid is None:
            kid = f"k{dt.datetime.now(dt.UTC):%Y%m%d}{secrets.token_hex(2)}"
        elif not _KID.fullmatch(kid):
            raise KeyringError("invalid kid (expected 1-32 characters of A-Za-z0-9_-)")
        return f"{kid}:{base64.b64encode(os.urandom(_KEY_BYTES)).decode('ascii')}"

    @property
    def active_kid(self) -> str:
        return self._active_kid

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._aeads)

    def wrap_dek(self, project: str, dek: bytes) -> tuple[str, str]:
        if len(dek) != _DEK_BYTES:
            raise KeyringError(f"data key must be {_DEK_BYTES} bytes")
        aead = self._aeads[self._active_kid]
        return self._active_kid, _encrypt(aead, _dek_aad(project), dek)

    def unwrap_dek(self, project: str, kid: str, wrapped: str) -> bytes:
        aead = self._aeads.get(kid)
        if aead is None:
            raise KeyringError(f"data key of project {project!r} is wrapped by unknown kid {kid!r}")
        try:
            return _decrypt(aead, _dek_aad(project), wrapped)
        except ValueError as exc:
            raise KeyringError(f"cannot unwrap data key of project {project!r}: {exc}") from None

    def rewrap_dek(self, project: str, kid: str, wrapped: str) -> tuple[str, str]:
        """Re-wrap under the active key (master-key rotation); the DEK itself is unchanged."""
        return self.wrap_dek(project, self.unwrap_dek(project, kid, wrapped))

    def __repr__(self) -> str:
        return f"Keyring(active_kid={self._active_kid!r}, kids={self.kids!r})"
