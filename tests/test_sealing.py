"""Secret sealing: bound to (project, env, name), tamper-evident, strict about its format."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenancy.keyring import new_dek
from tenancy.sealing import SealError, _encrypt, seal, unseal, unseal_v1

DEK = bytes(range(32))
PLAINTEXT = b"postgresql://app:hunter2@db/app"


def _decode(token: str) -> bytes:
    body = token.removeprefix("v2.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _encode(blob: bytes) -> str:
    return "v2." + base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


def test_round_trip_and_format() -> None:
    token = seal(DEK, "shop", "prod", "DATABASE_URL", 1, PLAINTEXT)
    assert token.startswith("v2.")
    assert "=" not in token and "+" not in token and "/" not in token
    assert len(_decode(token)) == 12 + len(PLAINTEXT) + 16
    assert unseal(DEK, "shop", "prod", "DATABASE_URL", 1, token) == PLAINTEXT


def test_empty_plaintext_round_trips() -> None:
    assert unseal(DEK, "p1", "dev", "X", 1, seal(DEK, "p1", "dev", "X", 1, b"")) == b""


def test_nonce_is_random() -> None:
    a = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    b = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    assert a != b
    assert _decode(a)[:12] != _decode(b)[:12]


@pytest.mark.parametrize(
    ("project", "env", "name"),
    [("other", "prod", "DATABASE_URL"), ("shop", "dev", "DATABASE_URL"), ("shop", "prod", "OTHER")],
)
def test_moved_ciphertext_fails(project: str, env: str, name: str) -> None:
    token = seal(DEK, "shop", "prod", "DATABASE_URL", 1, PLAINTEXT)
    with pytest.raises(SealError, match="authentication failed"):
        unseal(DEK, project, env, name, 1, token)


def test_wrong_dek_fails() -> None:
    token = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    with pytest.raises(SealError, match="authentication failed"):
        unseal(new_dek(), "shop", "prod", "K", 1, token)


def test_every_flipped_byte_fails() -> None:
    token = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    blob = _decode(token)
    assert unseal(DEK, "shop", "prod", "K", 1, _encode(blob)) == PLAINTEXT
    for i in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1 :]
            with pytest.raises(SealError):
                unseal(DEK, "shop", "prod", "K", 1, _encode(tampered))


def test_truncated_and_extended_payloads_fail() -> None:
    blob = _decode(seal(DEK, "shop", "prod", "K", 1, PLAINTEXT))
    for bad in (blob[:-1], blob[:27], b"", blob + b"\x00"):
        with pytest.raises(SealError):
            unseal(DEK, "shop", "prod", "K", 1, _encode(bad))


@pytest.mark.parametrize("prefix", ["", "v3.", "V2.", "v2", "v2:", " v2."])
def test_wrong_or_missing_prefix_fails(prefix: str) -> None:
    token = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    with pytest.raises(SealError, match="prefix"):
        unseal(DEK, "shop", "prod", "K", 1, prefix + token.removeprefix("v2."))


def test_malformed_base64_fails() -> None:
    token = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    body = token[3:]
    # The last character carries 2 bits that decoding ignores: flipping one is another spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(_decode(token)) % 3 == 2
    noncanonical = body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1]
    assert _decode("v2." + noncanonical) == _decode(token)
    for bad in (
        token + "=",
        token + "!",
        "v2." + body[:10] + "+" + body[11:],
        "v2." + body[:10] + "é" + body[11:],
        token + "A",
        "v2." + noncanonical,
    ):
        with pytest.raises(SealError):
            unseal(DEK, "shop", "prod", "K", 1, bad)


def test_bad_dek_and_ambiguous_fields_rejected() -> None:
    for dek in (b"", DEK[:16], DEK + b"\x00"):
        with pytest.raises(SealError, match="32 bytes"):
            seal(dek, "shop", "prod", "K", 1, PLAINTEXT)
    token = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    with pytest.raises(SealError, match="32 bytes"):
        unseal(DEK[:16], "shop", "prod", "K", 1, token)
    # "a:b" + "c" and "a" + "b:c" would otherwise share associated data.
    with pytest.raises(SealError, match="':'"):
        seal(DEK, "a:b", "c", "K", 1, PLAINTEXT)
    with pytest.raises(SealError, match="':'"):
        unseal(DEK, "a", "b:c", "K", 1, token)


def test_error_messages_contain_no_secret_material() -> None:
    token = seal(DEK, "shop", "prod", "K", 1, PLAINTEXT)
    blob = _decode(token)
    failures: list[Callable[[], bytes]] = [
        lambda: unseal(DEK, "other", "prod", "K", 1, token),
        lambda: unseal(DEK, "shop", "prod", "K", 1, token[3:]),
        lambda: unseal(DEK, "shop", "prod", "K", 1, token + "!"),
        lambda: unseal(DEK, "shop", "prod", "K", 1, _encode(blob[:20])),
    ]
    for fail in failures:
        with pytest.raises(SealError) as info:
            fail()
        text = str(info.value)
        assert info.value.__cause__ is None
        for material in (token[3:], token[3:20], PLAINTEXT.decode(), "hunter2", DEK.hex()):
            assert material not in text


def test_an_older_version_does_not_open_as_the_current_one() -> None:
    """Issue 9 row 7: rolling a secret back to an older ciphertext fails authentication."""
    old = seal(DEK, "shop", "prod", "K", 1, b"old value")
    with pytest.raises(SealError, match="authentication failed"):
        unseal(DEK, "shop", "prod", "K", 2, old)


def test_a_value_sealed_without_its_version_asks_for_the_migration() -> None:
    legacy = _encrypt(AESGCM(DEK), b"stk:secret:v1:shop:prod:K", PLAINTEXT)
    with pytest.raises(SealError, match="stk-bridge migrate"):
        unseal(DEK, "shop", "prod", "K", 1, legacy)
    assert unseal_v1(DEK, "shop", "prod", "K", legacy) == PLAINTEXT
