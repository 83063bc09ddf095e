"""API-key format: `stk_<16 of [a-z0-9]>.<43 base64url chars>`, parsed strictly, hashed."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tenancy.credentials import (
    KEY_PREFIX,
    hash_secret,
    new_api_key,
    parse_api_key,
    secret_matches,
    stored_digest,
)

KEY_ID = "abcdefgh01234567"
SECRET = "A" * 21 + "-_" + "z9" * 10  # 43 base64url characters
VALID = f"stk_{KEY_ID}.{SECRET}"


def test_new_api_key_format() -> None:
    key = new_api_key()
    assert KEY_PREFIX == "stk_"
    assert re.fullmatch(r"[a-z0-9]{16}", key.key_id)
    prefix, _, secret = key.api_key.partition(".")
    assert prefix == f"stk_{key.key_id}"
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert parse_api_key(key.api_key) == (key.key_id, secret)
    assert secret_matches(secret, stored_digest(key.secret_hash))
    assert not secret_matches(
        secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored_digest(key.secret_hash)
    )


def test_new_api_keys_are_random() -> None:
    keys = [new_api_key() for _ in range(20)]
    assert len({k.key_id for k in keys}) == 20
    assert len({k.api_key for k in keys}) == 20
    # Over 320 random characters both letters and digits show up.
    chars = "".join(k.key_id for k in keys)
    assert re.search(r"[a-z]", chars) and re.search(r"[0-9]", chars)


def test_repr_hides_the_key() -> None:
    key = new_api_key()
    secret = key.api_key.partition(".")[2]
    assert key.key_id in repr(key)
    assert secret not in repr(key) and secret not in str(key)


def test_parse_valid() -> None:
    assert parse_api_key(VALID) == (KEY_ID, SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"sk_{KEY_ID}.{SECRET}",
        f"STK_{KEY_ID}.{SECRET}",
        f"stk-{KEY_ID}.{SECRET}",
        f"{KEY_ID}.{SECRET}",
        f"stk_{KEY_ID[:-1]}.{SECRET}",
        f"stk_{KEY_ID}x.{SECRET}",
        f"stk_{KEY_ID}.{SECRET[:-1]}",
        f"stk_{KEY_ID}.{SECRET}A",
        f"stk_{KEY_ID}.{SECRET}=",
        f"stk_ABCDEFGH01234567.{SECRET}",
        f"stk_abcdefgH01234567.{SECRET}",
        f"stk_abcdefgh-1234567.{SECRET}",
        f"stk_abcdefgh_1234567.{SECRET}",
        f"stk_abcdefghé1234567.{SECRET}",
        f"stk_{KEY_ID}.{SECRET[:-1]}+",
        f"stk_{KEY_ID}.{SECRET[:-1]}/",
        f"stk_{KEY_ID}.{SECRET[:-1]}.",
        f"stk_{KEY_ID}{SECRET}",
        f"stk_{KEY_ID}..{SECRET}",
        f"stk_{KEY_ID}:{SECRET}",
        f" {VALID}",
        f"{VALID}\n",
        f"Bearer {VALID}",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    assert parse_api_key(text) is None


def test_hash_and_match() -> None:
    stored = hash_secret(SECRET)
    assert stored == hashlib.sha256(SECRET.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert secret_matches(SECRET, stored_digest(stored))
    assert not secret_matches(SECRET[:-1] + "B", stored_digest(stored))
    assert not secret_matches(SECRET, stored_digest(hash_secret("other")))
    assert not secret_matches(SECRET, stored_digest(stored.upper()))
    assert not secret_matches(SECRET, stored_digest(stored[:-1]))
    assert not secret_matches(SECRET, stored_digest(""))
    assert not secret_matches(SECRET, stored_digest("é" * 64))  # never raises on odd stored values
