"""Bundles and the per-project manifest: publish, rollback, promote (`docs/project-files.md`).

A bundle is written durably, once, before any pointer can name it, and the manifest only moves by
compare-and-set on its bytes: a crash leaves the old pointer or the new one, and concurrent writers
never lose each other's update (the loser re-reads and retries, then gets 409).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from collections.abc import Callable

from tenancy import ids
from tenancy.cache import Cache
from tenancy.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from tenancy.kv import KVStore
from tenancy.releases.manifest import Manifest, Publication, now

log = logging.getLogger(__name__)

RELEASE_ID = re.compile(r"^[0-9a-f]{64}$")


def _project(project: str) -> str:
    # Ids are part of storage keys: a ':' in one could reach another project's keys.
    if not ids.is_project_id(project):
        raise BadRequest(f"invalid project id {project!r}")
    return project


def _manifest_key(project: str) -> str:
    return f"manifest:{_project(project)}"


def _bundle_key(project: str, release_id: str) -> str:
    if not RELEASE_ID.fullmatch(release_id):
        raise NotFound(f"release {release_id!r} not found")
    return f"bundle:{_project(project)}:{release_id}"


def _check_env(env: str) -> None:
    if not ids.is_env_id(env):
        raise BadRequest(f"invalid env id {env!r}")


class ReleaseStore:
    def __init__(self, kv: KVStore, *, cache_size: int = 128, max_attempts: int = 50) -> None:
        self._kv = kv
        # Bundles are immutable and named by their hash: cached without a TTL, LRU-bounded.
        self.bundles: Cache[bytes] = Cache("bundle", None, max_entries=cache_size)
        self._max_attempts = max_attempts

    async def put_bundle(self, project: str, release_id: str, body: bytes) -> None:
        """Store a compiled release once; an existing bundle already holds these very bytes."""
        if hashlib.sha256(body).hexdigest() != release_id:
            raise BadRequest("bundle does not hash to its release id")
        await self._kv.cas(_bundle_key(project, release_id), None, body)

    async def has_bundle(self, project: str, release_id: str) -> bool:
        return await self._kv.get(_bundle_key(project, release_id)) is not None

    async def get_bundle(self, project: str, release_id: str) -> bytes:
        async def load() -> bytes:
            body = await self._kv.get(_bundle_key(project, release_id))
            if body is None:
                raise NotFound(f"release {release_id} not found")
            if hashlib.sha256(body).hexdigest() != release_id:
                log.error(
                    "stored bundle %s of project %s fails its hash check", release_id, project
                )
                raise ServiceUnavailable("stored release is corrupt")
            return body

        body = await self.bundles.get((project, release_id), load)
        assert body is not None  # the loader raises rather than answer None
        return body

    async def get_manifest(self, project: str) -> Manifest | None:
        raw = await self._kv.get(_manifest_key(project))
        return None if raw is None else Manifest.parse(raw)

    async def publish(
        self, project: str, env: str, release_id: str, ref: str | None, at: str | None = None
    ) -> Manifest:
        """Point `env` at a stored bundle; publishing the current release changes nothing.

        `at` is the move's `publishedAt` (default: now); the outbox names a move by it."""
        _check_env(env)
        await self.get_bundle(project, release_id)  # never point at a missing or corrupt bundle
        entry = Publication(release_id, ref, at or now())
        return await self._update(project, lambda manifest: manifest.point(env, entry))

    async def rollback(
        self, project: str, env: str, release_id: str, at: str | None = None
    ) -> Manifest:
        """Point `env` back at a release from its history; the move is recorded in history."""
        _check_env(env)

        def change(manifest: Manifest) -> Manifest | None:
            pointer = manifest.envs.get(env)
            history = pointer.history if pointer is not None else ()
            past = next((e for e in history if e.release == release_id), None)
            if past is None:
                raise NotFound(f"release {release_id} is not in the history of {env}")
            return manifest.point(env, Publication(release_id, past.ref, at or now()))

        return await self._update(project, change)

    async def promote(self, project: str, from_env: str, to_env: str, at: str | None = None) -> str:
        """Copy `from_env`'s current release id to `to_env`; returns that id."""
        _check_env(from_env)
        _check_env(to_env)

        def change(manifest: Manifest) -> Manifest | None:
            source = manifest.envs.get(from_env)
            if source is None:
                raise NotFound(f"env {from_env} has no release")
            entry = Publication(source.release, source.current.ref, at or now())
            return manifest.point(to_env, entry)

        release = (await self._update(project, change)).release(to_env)
        assert release is not None  # `change` pointed it or found it already pointed
        return release

    async def drop_env(self, project: str, env: str) -> None:
        await self._update(project, lambda manifest: manifest.without(env))

    async def delete_project(self, project: str) -> None:
        # The manifest goes first, so no pointer ever names a deleted bundle.
        await self._kv.delete(_manifest_key(project))
        await self._kv.delete(*await self._kv.keys(f"bundle:{_project(project)}:"))
        self.bundles.invalidate(project)

    async def _update(
        self, project: str, change: Callable[[Manifest], Manifest | None]
    ) -> Manifest:
        """Read, change, compare-and-set; retry with jittered backoff when another writer won.

        `change` answers the new manifest, or None when there is nothing to change.
        """
        key = _manifest_key(project)
        for attempt in range(self._max_attempts):
            raw = await self._kv.get(key)
            manifest = Manifest.empty(project) if raw is None else Manifest.parse(raw)
            changed = change(manifest)
            if changed is None:
                return manifest
            if await self._kv.cas(key, raw, changed.dumps()):
                return changed
            backoff = min(0.1, 0.002 * 2**attempt)
            await asyncio.sleep(random.uniform(0, backoff))  # noqa: S311 (jitter, not a secret)
        raise Conflict(f"the manifest of {project} kept changing; retry")
