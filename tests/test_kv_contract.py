"""One contract, every KV backend: memory, file (a tmp dir) and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis

from tenancy.errors import ServiceUnavailable
from tenancy.kv import KVStore, open_kv

OpenKV = Callable[[], KVStore]


@pytest.fixture
async def open_store(kv_url: str) -> AsyncIterator[OpenKV]:
    """Opens stores on the same data (memory: the same instance, it has no other sharing)."""
    opened: list[KVStore] = []
    shared = open_kv(kv_url) if kv_url == "memory://" else None

    def opener() -> KVStore:
        store = shared or open_kv(kv_url)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
def kv(open_store: OpenKV) -> KVStore:
    return open_store()


async def test_get_set_roundtrip(kv: KVStore) -> None:
    assert await kv.get("missing") is None
    every_byte = bytes(range(256))
    await kv.set("a:1", every_byte)
    await kv.set("empty", b"")
    assert await kv.get("a:1") == every_byte
    assert await kv.get("empty") == b""
    await kv.set("a:1", b"second")
    assert await kv.get("a:1") == b"second"


async def test_cas_semantics(kv: KVStore) -> None:
    assert await kv.cas("k", b"x", b"y") is False  # expected a value, key absent
    assert await kv.get("k") is None
    assert await kv.cas("k", None, b"v1") is True  # create only if absent
    assert await kv.cas("k", None, b"other") is False
    assert await kv.cas("k", b"wrong", b"other") is False
    assert await kv.cas("k", b"", b"other") is False  # empty is not absent
    assert await kv.get("k") == b"v1"
    assert await kv.cas("k", b"v1", b"v2") is True
    assert await kv.get("k") == b"v2"
    assert await kv.cas("k", b"v1", None) is False
    assert await kv.cas("k", b"v2", None) is True  # delete
    assert await kv.get("k") is None
    await kv.set("e", b"")
    assert await kv.cas("e", None, b"x") is False  # present-but-empty is not absent
    assert await kv.cas("e", b"", b"x") is True


async def test_concurrent_cas_loses_no_increment(open_store: OpenKV) -> None:
    async def increment(store: KVStore) -> None:
        while True:
            raw = await store.get("counter")
            if await store.cas("counter", raw, str(int(raw or b"0") + 1).encode()):
                return

    await asyncio.gather(*(increment(open_store()) for _ in range(20)))
    assert await open_store().get("counter") == b"20"


async def test_delete(kv: KVStore) -> None:
    await kv.set("a", b"1")
    await kv.set("b", b"2")
    await kv.set("c", b"3")
    await kv.delete("a", "b", "never-existed")
    await kv.delete()
    assert await kv.get("a") is None
    assert await kv.get("b") is None
    assert await kv.get("c") == b"3"


async def test_keys_by_prefix_with_awkward_names(kv: KVStore) -> None:
    names = ["a:1", "a:b/c", "a:../up", "a:..", "a:X", "a:x", "a:é", "a:*?[]\\", "ab", "b:a:1"]
    for i, name in enumerate(names):
        await kv.set(name, str(i).encode())
    assert await kv.keys("a:") == sorted(n for n in names if n.startswith("a:"))
    assert await kv.keys("a:*") == ["a:*?[]\\"]  # glob characters are literal
    assert await kv.keys("") == sorted(names)
    assert await kv.keys("zzz") == []
    for i, name in enumerate(names):
        assert await kv.get(name) == str(i).encode()


async def test_reopened_store_sees_data(kv_url: str, open_store: OpenKV) -> None:
    if kv_url == "memory://":
        pytest.skip("memory is per instance")
    await open_store().set("durable", b"yes")
    assert await open_store().get("durable") == b"yes"


async def test_stores_are_isolated(kv_url: str, kv: KVStore, tmp_path: Path) -> None:
    if kv_url.startswith("redis"):
        prefix = parse_qs(urlsplit(kv_url).query)["prefix"][0]
        other_url = kv_url.replace(prefix, prefix.rstrip(":") + "-other:")
    elif kv_url.startswith("s3"):
        other_url = kv_url.replace("?", "-other?")
    else:
        other_url = kv_url if kv_url == "memory://" else f"file://{tmp_path}/other"
    other = open_kv(other_url)
    try:
        await kv.set("same", b"mine")
        await other.set("same", b"theirs")
        await other.set("only-other", b"x")
        assert await kv.get("same") == b"mine"
        assert await kv.keys("") == ["same"]
        assert await other.keys("") == ["only-other", "same"]
        await other.delete("same", "only-other")
    finally:
        await other.close()


async def test_ping(kv: KVStore) -> None:
    await kv.ping()


async def test_file_keys_stay_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "kv"
    kv = open_kv(f"file://{root}")
    for key in ["../escape", "/etc/passwd", "a/../../b", "..", "."]:
        await kv.set(key, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv"]
    files = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(files) == 5 and all(p.is_file() for p in files)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize(
    "url",
    [
        *("", "ftp://host/x", "file://relative/path", "file:relative", "redis://", "memcached://h"),
        *("s3://", "s3://Bad_Bucket/p", "s3://b1/p?colour=red", "s3://b1/p?region=a&region=b"),
        "s3://b1/p?endpoint=ftp://host",
        "s3://b1/p?endpoint=http://host/path",
    ],
)
def test_open_kv_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_kv(url)


async def test_unreachable_redis_raises_service_unavailable() -> None:
    kv = open_kv("redis://127.0.0.1:1/0?prefix=nobody:")
    try:
        for call in (
            kv.get("k"),
            kv.set("k", b"v"),
            kv.cas("k", None, b"v"),
            kv.delete("k"),
            kv.keys(""),
            kv.ping(),
        ):
            with pytest.raises(ServiceUnavailable):
                await call
    finally:
        await kv.close()


async def test_unusable_file_root_raises_service_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_bytes(b"")
    with pytest.raises(ServiceUnavailable):
        open_kv(f"file://{tmp_path}/not-a-dir")
    root = tmp_path / "kv"
    kv = open_kv(f"file://{root}")
    root.rmdir()
    for call in (kv.set("k", b"v"), kv.cas("k", None, b"v"), kv.keys(""), kv.ping()):
        with pytest.raises(ServiceUnavailable):
            await call


async def test_redis_prefix_namespaces_every_key(redis_url: str) -> None:
    prefix = parse_qs(urlsplit(redis_url).query)["prefix"][0]
    kv = open_kv(redis_url)
    raw = aioredis.Redis.from_url(redis_url.split("?")[0])
    try:
        await kv.set("x:1", b"v")
        await kv.cas("x:2", None, b"w")
        assert await raw.get(f"{prefix}x:1") == b"v"
        assert await raw.get(f"{prefix}x:2") == b"w"
        assert await raw.get("x:1") is None
    finally:
        await kv.close()
        await raw.aclose()
