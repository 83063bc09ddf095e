"""Secret sealing: bound to (project, env, name), tamper-evident, strict about its format."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from tenancy.keyring import new_dek
from tenancy.sealing import SealError, seal, unseal

DEK = bytes(range(32))
PLAINTEXT = b"postgresql://app:hunter2@db/app"


def _decode(token: str) -> bytes:
    body = token.removeprefix("v1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _encode(blob: bytes) -> str:
    return "v1." + base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


def test_round_trip_and_format() -> None:
    token = seal(DEK, "shop", "prod", "DATABASE_URL", PLAINTEXT)
    assert token.startswith("v1.")
    assert "=" not in token and "+" not in token and "/" not in token
    assert len(_decode(token)) == 12 + len(PLAINTEXT) + 16
    assert unseal(DEK, "shop", "prod", "DATABASE_URL", token) == PLAINTEXT


def test_empty_plaintext_round_trips() -> None:
    assert unseal(DEK, "p1", "dev", "X", seal(DEK, "p1", "dev", "X", b"")) == b""


def test_nonce_is_random() -> None:
    a = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    b = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    assert a != b
    assert _decode(a)[:12] != _decode(b)[:12]


@pytest.mark.parametrize(
    ("project", "env", "name"),
    [("other", "prod", "DATABASE_URL"), ("shop", "dev", "DATABASE_URL"), ("shop", "prod", "OTHER")],
)
def test_moved_ciphertext_fails(project: str, env: str, name: str) -> None:
    token = seal(DEK, "shop", "prod", "DATABASE_URL", PLAINTEXT)
    with pytest.raises(SealError, match="authentication failed"):
        unseal(DEK, project, env, name, token)


def test_wrong_dek_fails() -> None:
    token = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    with pytest.raises(SealError, match="authentication failed"):
        unseal(new_dek(), "shop", "prod", "K", token)


def test_every_flipped_byte_fails() -> None:
    token = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    blob = _decode(token)
    assert unseal(DEK, "shop", "prod", "K", _encode(blob)) == PLAINTEXT
    for i in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1 :]
            with pytest.raises(SealError):
                unseal(DEK, "shop", "prod", "K", _encode(tampered))


def test_truncated_and_extended_payloads_fail() -> None:
    blob = _decode(seal(DEK, "shop", "prod", "K", PLAINTEXT))
    for bad in (blob[:-1], blob[:27], b"", blob + b"\x00"):
        with pytest.raises(SealError):
            unseal(DEK, "shop", "prod", "K", _encode(bad))


@pytest.mark.parametrize("prefix", ["", "v2.", "V1.", "v1", "v1:", " v1."])
def test_wrong_or_missing_prefix_fails(prefix: str) -> None:
    token = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    with pytest.raises(SealError, match="prefix"):
        unseal(DEK, "shop", "prod", "K", prefix + token.removeprefix("v1."))


def test_malformed_base64_fails() -> None:
    token = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    body = token[3:]
    # The last character carries 2 bits that decoding ignores: flipping one is another spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(_decode(token)) % 3 == 2
    noncanonical = body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1]
    assert _decode("v1." + noncanonical) == _decode(token)
    for bad in (
        token + "=",
        token + "!",
        "v1." + body[:10] + "+" + body[11:],
        "v1." + body[:10] + "é" + body[11:],
        token + "A",
        "v1." + noncanonical,
    ):
        with pytest.raises(SealError):
            unseal(DEK, "shop", "prod", "K", bad)


def test_bad_dek_and_ambiguous_fields_rejected() -> None:
    for dek in (b"", DEK[:16], DEK + b"\x00"):
        with pytest.raises(SealError, match="32 bytes"):
            seal(dek, "shop", "prod", "K", PLAINTEXT)
    token = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    with pytest.raises(SealError, match="32 bytes"):
        unseal(DEK[:16], "shop", "prod", "K", token)
    # "a:b" + "c" and "a" + "b:c" would otherwise share associated data.
    with pytest.raises(SealError, match="':'"):
        seal(DEK, "a:b", "c", "K", PLAINTEXT)
    with pytest.raises(SealError, match="':'"):
        unseal(DEK, "a", "b:c", "K", token)


def test_error_messages_contain_no_secret_material() -> None:
    token = seal(DEK, "shop", "prod", "K", PLAINTEXT)
    blob = _decode(token)
    failures: list[Callable[[], bytes]] = [
        lambda: unseal(DEK, "other", "prod", "K", token),
        lambda: unseal(DEK, "shop", "prod", "K", token[3:]),
        lambda: unseal(DEK, "shop", "prod", "K", token + "!"),
        lambda: unseal(DEK, "shop", "prod", "K", _encode(blob[:20])),
    ]
    for fail in failures:
        with pytest.raises(SealError) as info:
            fail()
        text = str(info.value)
        assert info.value.__cause__ is None
        for material in (token[3:], token[3:20], PLAINTEXT.decode(), "hunter2", DEK.hex()):
            assert material not in text
