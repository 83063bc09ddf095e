"""Master keyring: wraps each project's data key (DEK) under a master key (`docs/security.md`).

Every entry unwraps (the *known* keys); one, the *primary*, wraps new data keys: the one
`STK_MASTER_KEY_PRIMARY` names, else the first. Keeping the two apart is what makes a rollout
gapless: a new key is first added everywhere as known, and only then made primary, so no
replica ever meets a data key wrapped under a key it does not have (README, "Master-key
rotation").
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

    def __init__(self, aeads: dict[str, AESGCM], primary: str | None = None) -> None:
        if not aeads:
            raise KeyringError("keyring is empty; create a key with `stk-bridge keys generate`")
        if primary is not None and primary not in aeads:
            raise KeyringError(
                f"primary kid {primary!r} is not in the keyring (known: {', '.join(aeads)})"
            )
        self._aeads = dict(aeads)
        self._active_kid = primary or next(iter(aeads))

    @classmethod
    def parse(cls, text: str, primary: str | None = None) -> Keyring:
        """Parse `kid:base64key` entries separated by commas and/or newlines; `primary` names
        the kid that wraps new data keys (default: the first entry)."""
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
        return cls(aeads, primary or None)

    def with_primary(self, kid: str | None) -> Keyring:
        """The same known keys with `kid` wrapping new data keys (None or "": unchanged)."""
        return Keyring(self._aeads, kid) if kid else self

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
