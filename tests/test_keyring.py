"""Master keyring: parsing, DEK wrapping bound to the project, rotation, no key leaks."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest

from tenancy.keyring import Keyring, KeyringError, new_dek

KEY_A = bytes(range(32))
KEY_B = b"\xfb\xff" * 16  # standard base64 of this is full of '+' and '/'
B64_A = base64.b64encode(KEY_A).decode()
B64_B = base64.b64encode(KEY_B).decode()


def _decode(token: str) -> bytes:
    body = token.removeprefix("v1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _encode(blob: bytes) -> str:
    return "v1." + base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


def test_parse_separators_and_order() -> None:
    text = f"\n  ka:{B64_A} ,\r\n\n kb : {B64_B},,\n"
    ring = Keyring.parse(text)
    assert ring.active_kid == "ka"
    assert ring.kids == ("ka", "kb")
    assert Keyring.parse(f"kb:{B64_B},ka:{B64_A}").kids == ("kb", "ka")


def test_parse_accepts_urlsafe_and_unpadded_keys() -> None:
    urlsafe = base64.urlsafe_b64encode(KEY_B).decode().rstrip("=")
    assert "-" in urlsafe and "_" in urlsafe
    standard = Keyring.parse(f"k:{B64_B}")
    relaxed = Keyring.parse(f"k:{urlsafe}")
    dek = new_dek()
    # Same key either way: what one wraps, the other unwraps.
    assert relaxed.unwrap_dek("shop", *standard.wrap_dek("shop", dek)) == dek


@pytest.mark.parametrize(
    "kid", ["", "a" * 33, "k 1", "k.1", "k/1", "ké", "k+1"], ids=lambda k: repr(k)
)
def test_parse_rejects_bad_kid(kid: str) -> None:
    with pytest.raises(KeyringError, match="invalid kid"):
        Keyring.parse(f"{kid}:{B64_A}")


def test_parse_accepts_edge_kids() -> None:
    assert Keyring.parse(f"{'Z_-9' * 8}:{B64_A},x:{B64_B}").kids == ("Z_-9" * 8, "x")


@pytest.mark.parametrize("key", ["not base64!", B64_A[:-2] + "@=", B64_A + "A", "é" * 44])
def test_parse_rejects_bad_base64(key: str) -> None:
    with pytest.raises(KeyringError):
        Keyring.parse(f"k1:{key}")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_parse_rejects_wrong_key_length(size: int) -> None:
    with pytest.raises(KeyringError, match=f"32 bytes, got {size}"):
        Keyring.parse(f"k1:{base64.b64encode(bytes(size)).decode()}")


def test_parse_rejects_duplicates_missing_colon_and_empty() -> None:
    with pytest.raises(KeyringError, match="duplicate kid 'k1'"):
        Keyring.parse(f"k1:{B64_A}\nk1:{B64_B}")
    with pytest.raises(KeyringError, match="entry 2 is not of the form"):
        Keyring.parse(f"k1:{B64_A},{B64_B}")
    for empty in ("", "   ", ",\n,\r\n ,"):
        with pytest.raises(KeyringError, match="empty"):
            Keyring.parse(empty)


def test_error_messages_and_repr_never_contain_key_material() -> None:
    short = base64.b64encode(KEY_A[:31]).decode()
    bad_inputs = [
        f"k1:{short}",
        f"k1:{B64_A}!",
        f"k1:{B64_A}\nk1:{B64_B}",
        B64_A,  # kid forgotten: the whole entry is key material
        f"{B64_A}:{B64_B}",  # kid and key swapped around
        f"{B64_B[:20]}:{B64_A}",  # a key fragment where the kid belongs
    ]
    for text in bad_inputs:
        with pytest.raises(KeyringError) as info:
            Keyring.parse(text)
        message = str(info.value)
        assert info.value.__cause__ is None
        for material in (B64_A, B64_A[:16], B64_B, B64_B[:16], short[:16], KEY_A.hex()):
            assert material not in message, (text, message)
    ring = Keyring.parse(f"ka:{B64_A},kb:{B64_B}")
    for text in (repr(ring), str(ring)):
        assert "ka" in text and "kb" in text
        assert B64_A[:8] not in text and B64_B[:8] not in text and KEY_A.hex()[:8] not in text


def test_wrap_round_trip_and_format() -> None:
    ring = Keyring.parse(f"ka:{B64_A},kb:{B64_B}")
    dek = new_dek()
    kid, wrapped = ring.wrap_dek("shop", dek)
    assert kid == "ka"
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]+", wrapped)
    assert len(_decode(wrapped)) == 12 + 32 + 16
    assert dek.hex() not in wrapped
    assert ring.unwrap_dek("shop", kid, wrapped) == dek
    assert ring.wrap_dek("shop", dek)[1] != wrapped  # fresh nonce each time


def test_dek_wrapped_for_one_project_does_not_unwrap_for_another() -> None:
    ring = Keyring.parse(f"ka:{B64_A}")
    kid, wrapped = ring.wrap_dek("shop-a", new_dek())
    with pytest.raises(KeyringError, match="authentication failed"):
        ring.unwrap_dek("shop-b", kid, wrapped)


def test_unwrap_failures() -> None:
    ring = Keyring.parse(f"ka:{B64_A},kb:{B64_B}")
    dek = new_dek()
    _, wrapped = ring.wrap_dek("shop", dek)
    with pytest.raises(KeyringError, match="unknown kid 'kz'"):
        ring.unwrap_dek("shop", "kz", wrapped)
    with pytest.raises(KeyringError, match="authentication failed"):
        ring.unwrap_dek("shop", "kb", wrapped)  # labelled with the wrong kid
    for bad in (wrapped[3:], "v2." + wrapped[3:], "v1" + wrapped[3:]):
        with pytest.raises(KeyringError, match="prefix"):
            ring.unwrap_dek("shop", "ka", bad)
    for bad in (wrapped + "!", wrapped + "=", "v1.", "v1.AAAA"):
        with pytest.raises(KeyringError):
            ring.unwrap_dek("shop", "ka", bad)
    blob = _decode(wrapped)
    for i in range(len(blob)):
        tampered = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
        with pytest.raises(KeyringError):
            ring.unwrap_dek("shop", "ka", _encode(tampered))


def test_wrap_rejects_wrong_dek_length() -> None:
    ring = Keyring.parse(f"ka:{B64_A}")
    for dek in (b"", bytes(16), bytes(31), bytes(33)):
        with pytest.raises(KeyringError, match="32 bytes"):
            ring.wrap_dek("shop", dek)


def test_rotation_keeps_old_deks_readable_and_rewraps_to_new_kid() -> None:
    old = Keyring.parse(f"k-old:{B64_A}")
    deks = {p: new_dek() for p in ("p1", "p2")}
    stored = {p: old.wrap_dek(p, dek) for p, dek in deks.items()}
    assert {kid for kid, _ in stored.values()} == {"k-old"}

    rotated = Keyring.parse(f"k-new:{B64_B}\nk-old:{B64_A}")
    assert rotated.active_kid == "k-new"
    for p, (kid, wrapped) in stored.items():
        assert rotated.unwrap_dek(p, kid, wrapped) == deks[p]
        assert rotated.wrap_dek(p, deks[p])[0] == "k-new"
        new_kid, rewrapped = rotated.rewrap_dek(p, kid, wrapped)
        assert new_kid == "k-new"
        stored[p] = (new_kid, rewrapped)

    # Once nothing is wrapped by the old kid, it can leave the keyring.
    final = Keyring.parse(f"k-new:{B64_B}")
    for p, (kid, wrapped) in stored.items():
        assert final.unwrap_dek(p, kid, wrapped) == deks[p]
    with pytest.raises(KeyringError, match="unknown kid"):
        final.unwrap_dek("p1", "k-old", old.wrap_dek("p1", deks["p1"])[1])


def test_generate_entry() -> None:
    before = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    entry = Keyring.generate_entry()
    after = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    kid, _, key = entry.partition(":")
    assert re.fullmatch(r"k\d{8}[0-9a-f]{4}", kid)
    assert kid[1:9] in (before, after)
    assert len(base64.b64decode(key, validate=True)) == 32
    ring = Keyring.parse(entry)
    assert ring.kids == (kid,)
    assert Keyring.generate_entry() != entry
    assert Keyring.generate_entry("prod-2025").startswith("prod-2025:")
    with pytest.raises(KeyringError, match="invalid kid"):
        Keyring.generate_entry("bad kid")


def test_new_dek_is_random_256_bits() -> None:
    deks = {new_dek() for _ in range(8)}
    assert len(deks) == 8
    assert all(len(d) == 32 for d in deks)


def test_the_primary_wraps_and_every_known_key_unwraps() -> None:
    """`STK_MASTER_KEY_PRIMARY`: a key can be known everywhere before it wraps anything."""
    old = Keyring.parse(f"k-old:{B64_A}")
    added = Keyring.parse(f"k-old:{B64_A},k-new:{B64_B}")  # added last: the old one stays primary
    named = Keyring.parse(f"k-new:{B64_B},k-old:{B64_A}", "k-old")  # or named as primary
    assert added.active_kid == "k-old" == named.active_kid
    switched = added.with_primary("k-new")
    assert switched.active_kid == "k-new" and switched.kids == added.kids
    dek = new_dek()
    # A replica already switched wraps under the new key; one not yet switched unwraps it, and
    # the other way round.
    assert added.unwrap_dek("p", *switched.wrap_dek("p", dek)) == dek
    assert switched.unwrap_dek("p", *old.wrap_dek("p", dek)) == dek
    assert added.with_primary(None) is added
    with pytest.raises(KeyringError, match="primary kid 'k-gone' is not in the keyring"):
        Keyring.parse(f"k-old:{B64_A}", "k-gone")
