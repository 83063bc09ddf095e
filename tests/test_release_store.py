"""The release store on every KV backend: hashes, crash safety, concurrent publishes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from tenancy.errors import BadRequest, NotFound, ServiceUnavailable
from tenancy.kv import KVStore, open_kv
from tenancy.releases.manifest import HISTORY_LIMIT, Manifest, Publication
from tenancy.releases.store import ReleaseStore

P = "shop"
NewStore = Callable[[], ReleaseStore]


def bundle(n: int, project: str = P) -> tuple[str, bytes]:
    body = orjson.dumps({"project": project, "n": n})
    return hashlib.sha256(body).hexdigest(), body


@pytest.fixture
async def kv(kv_url: str) -> AsyncIterator[KVStore]:
    store = open_kv(kv_url)
    yield store
    await store.close()


@pytest.fixture
async def new_store(kv_url: str, kv: KVStore) -> AsyncIterator[NewStore]:
    """Fresh ReleaseStores (empty caches), each on its own KV connection where possible."""
    opened: list[KVStore] = []

    def factory() -> ReleaseStore:
        if kv_url == "memory://":
            return ReleaseStore(kv)
        opened.append(open_kv(kv_url))
        return ReleaseStore(opened[-1])

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
def store(kv: KVStore) -> ReleaseStore:
    return ReleaseStore(kv)


async def test_bundle_roundtrip_and_write_once(store: ReleaseStore) -> None:
    rid, body = bundle(1)
    with pytest.raises(NotFound):
        await store.get_bundle(P, rid)
    await store.put_bundle(P, rid, body)
    await store.put_bundle(P, rid, body)
    assert await store.get_bundle(P, rid) == body
    with pytest.raises(NotFound):
        await store.get_bundle(P, "not-a-hash")


async def test_bundle_hash_checked_on_write(store: ReleaseStore, kv: KVStore) -> None:
    rid, body = bundle(1)
    with pytest.raises(BadRequest):
        await store.put_bundle(P, rid, body + b" ")
    assert await kv.keys("bundle:") == []


async def test_tampered_bundle_fails_on_read(
    store: ReleaseStore, kv: KVStore, new_store: NewStore, caplog: pytest.LogCaptureFixture
) -> None:
    rid, body = bundle(1)
    await store.put_bundle(P, rid, body)
    await kv.set(f"bundle:{P}:{rid}", body.replace(b"1", b"2"))
    with caplog.at_level(logging.ERROR), pytest.raises(ServiceUnavailable):
        await new_store().get_bundle(P, rid)
    assert any(rid in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    with pytest.raises(ServiceUnavailable):  # and nothing points at a corrupt bundle
        await new_store().publish(P, "dev", rid, None)
    assert await store.get_manifest(P) is None


async def test_publish_builds_the_manifest(store: ReleaseStore, kv: KVStore) -> None:
    rid, body = bundle(1)
    await store.put_bundle(P, rid, body)
    manifest = await store.publish(P, "dev", rid, "abc123")
    assert manifest == await store.get_manifest(P)
    dev = manifest.envs["dev"]
    assert manifest.project == P and manifest.revision == 1
    assert (dev.release, dev.current.ref) == (rid, "abc123")
    assert dev.current.published_at.endswith("Z")
    assert dev.history == (Publication(rid, "abc123", dev.current.published_at),)
    again = await store.publish(P, "dev", rid, "other-ref")
    assert again == manifest  # idempotent: nothing changes
    # The stored form (`docs/storage.md`) is what it always was, and parses back to the value.
    at = dev.current.published_at
    stored = await kv.get(f"manifest:{P}")
    assert stored is not None and orjson.loads(stored) == {
        "project": P,
        "revision": 1,
        "envs": {
            "dev": {
                "release": rid,
                "ref": "abc123",
                "publishedAt": at,
                "history": [{"release": rid, "ref": "abc123", "publishedAt": at}],
            }
        },
    }
    assert Manifest.parse(stored) == manifest and manifest.dumps() == stored


async def test_publish_refuses_missing_bundle_and_bad_ids(store: ReleaseStore) -> None:
    rid, _ = bundle(1)
    with pytest.raises(NotFound):
        await store.publish(P, "dev", rid, None)
    with pytest.raises(BadRequest):
        await store.publish("Bad:Project", "dev", rid, None)
    with pytest.raises(BadRequest):
        await store.publish(P, "dev:x", rid, None)
    assert await store.get_manifest(P) is None


async def test_crash_between_bundle_write_and_pointer_swap_keeps_old(
    store: ReleaseStore, new_store: NewStore
) -> None:
    old, old_body = bundle(1)
    new, new_body = bundle(2)
    await store.put_bundle(P, old, old_body)
    await store.publish(P, "dev", old, None)
    await store.put_bundle(P, new, new_body)  # ... and the process dies before publish
    reader = new_store()
    manifest = await reader.get_manifest(P)
    assert manifest is not None and manifest.release("dev") == old
    assert await reader.get_bundle(P, old) == old_body
    assert manifest.revision == 1


async def test_concurrent_publishes_lose_none(store: ReleaseStore, new_store: NewStore) -> None:
    releases = [bundle(n) for n in range(20)]
    for rid, body in releases:
        await store.put_bundle(P, rid, body)
    await asyncio.gather(
        *(new_store().publish(P, "dev", rid, f"r{rid[:6]}") for rid, _ in releases)
    )
    manifest = await store.get_manifest(P)
    assert manifest is not None and manifest.revision == 20
    history = manifest.envs["dev"].history
    assert sorted(e.release for e in history) == sorted(rid for rid, _ in releases)
    assert history[0] == manifest.envs["dev"].current


async def test_history_is_capped_newest_first(store: ReleaseStore) -> None:
    releases = [bundle(n) for n in range(HISTORY_LIMIT + 3)]
    for rid, body in releases:
        await store.put_bundle(P, rid, body)
        await store.publish(P, "dev", rid, None)
    manifest = await store.get_manifest(P)
    assert manifest is not None
    history = [e.release for e in manifest.envs["dev"].history]
    assert history == [rid for rid, _ in reversed(releases)][:HISTORY_LIMIT]


async def test_rollback(store: ReleaseStore) -> None:
    (a, a_body), (b, b_body), (c, c_body) = bundle(1), bundle(2), bundle(3)
    for rid, body in [(a, a_body), (b, b_body), (c, c_body)]:
        await store.put_bundle(P, rid, body)
    await store.publish(P, "dev", a, "ref-a")
    await store.publish(P, "dev", b, "ref-b")
    manifest = await store.rollback(P, "dev", a)
    dev = manifest.envs["dev"]
    assert (dev.release, dev.current.ref, manifest.revision) == (a, "ref-a", 3)
    assert [e.release for e in dev.history] == [a, b, a]
    assert (await store.rollback(P, "dev", a)).revision == 3  # already current
    with pytest.raises(NotFound):
        await store.rollback(P, "dev", c)  # stored, but never published to dev
    with pytest.raises(NotFound):
        await store.rollback(P, "prod", a)


async def test_promote(store: ReleaseStore) -> None:
    rid, body = bundle(1)
    with pytest.raises(NotFound):
        await store.promote(P, "dev", "prod")
    await store.put_bundle(P, rid, body)
    await store.publish(P, "dev", rid, "ref-1")
    assert await store.promote(P, "dev", "prod") == rid
    manifest = await store.get_manifest(P)
    assert manifest is not None and manifest.revision == 2
    prod = manifest.envs["prod"]
    assert (prod.release, prod.current.ref) == (rid, "ref-1")
    assert await store.promote(P, "dev", "prod") == rid
    again = await store.get_manifest(P)
    assert again is not None and again.revision == 2


async def test_drop_env(store: ReleaseStore) -> None:
    rid, body = bundle(1)
    await store.put_bundle(P, rid, body)
    await store.publish(P, "dev", rid, None)
    await store.publish(P, "prod", rid, None)
    await store.drop_env(P, "dev")
    await store.drop_env(P, "never")
    manifest = await store.get_manifest(P)
    assert manifest is not None and list(manifest.envs) == ["prod"]
    assert manifest.revision == 3


async def test_delete_project(store: ReleaseStore, kv: KVStore) -> None:
    mine, mine_body = bundle(1)
    theirs, theirs_body = bundle(1, "shop-eu")
    await store.put_bundle(P, mine, mine_body)
    await store.put_bundle("shop-eu", theirs, theirs_body)
    await store.publish(P, "dev", mine, None)
    await store.publish("shop-eu", "dev", theirs, None)
    await store.get_bundle(P, mine)  # cached
    await store.delete_project(P)
    assert await store.get_manifest(P) is None
    assert await kv.keys(f"bundle:{P}:") == []
    with pytest.raises(NotFound):
        await store.get_bundle(P, mine)
    assert await store.get_bundle("shop-eu", theirs) == theirs_body
    assert await store.get_manifest("shop-eu") is not None


PUBLISHER = """
import asyncio, hashlib, pathlib, sys, time
from tenancy.kv import open_kv
from tenancy.releases.store import ReleaseStore

async def main(url, worker, count):
    kv = open_kv(url)
    store = ReleaseStore(kv)
    gate = pathlib.Path(url.removeprefix("file://")).parent
    (gate / f"ready-{worker}").touch()
    while not (gate / "go").exists():  # start together, so the writes really race
        time.sleep(0.005)
    for n in range(count):
        body = f"worker {worker} release {n}".encode()
        rid = hashlib.sha256(body).hexdigest()
        await store.put_bundle("shop", rid, body)
        await store.publish("shop", "dev", rid, None)
    await kv.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow  # real Python processes
async def test_file_cas_across_processes_loses_none(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/kv"
    workers, each = 3, 5
    procs = [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, url, str(w), str(each)])
        for w in range(workers)
    ]
    try:
        async with asyncio.timeout(30):
            while len(list(tmp_path.glob("ready-*"))) < workers:
                assert all(p.poll() is None for p in procs), "a publisher died before starting"
                await asyncio.sleep(0.01)
        (tmp_path / "go").touch()
        assert [await asyncio.to_thread(p.wait, 30) for p in procs] == [0] * workers
    finally:
        for p in procs:
            p.kill()
    kv = open_kv(url)
    manifest = await ReleaseStore(kv).get_manifest(P)
    assert manifest is not None and manifest.revision == workers * each
    assert len({e.release for e in manifest.envs["dev"].history}) == workers * each


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"project": "shop", "revision": 1}',
        b'{"project": "shop", "revision": "1", "envs": {}}',
        b'{"project": "shop", "revision": 1, "envs": {"dev": {"release": 5}}}',
        b'{"project": "shop", "revision": 1, "envs": {"dev": {"release": "r", "ref": 1,'
        b' "publishedAt": "t", "history": []}}}',
    ],
)
async def test_a_malformed_manifest_is_503_not_a_crash(
    store: ReleaseStore, kv: KVStore, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await kv.set(f"manifest:{P}", raw)
    with caplog.at_level(logging.ERROR), pytest.raises(ServiceUnavailable):
        await store.get_manifest(P)
    assert any("manifest is malformed" in r.getMessage() for r in caplog.records)
