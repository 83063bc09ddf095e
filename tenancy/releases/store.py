"""Bundles and the per-project manifest: publish, rollback, promote (`manifest.md`).

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
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from tenancy import ids
from tenancy.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from tenancy.kv import KVStore

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50
RELEASE_ID = re.compile(r"^[0-9a-f]{64}$")
Manifest = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def _point(manifest: Manifest, env: str, entry: dict[str, Any]) -> bool:
    """Make `entry` the env's current release; False (no change) when it already is."""
    current = manifest["envs"].get(env)
    if current is not None and current["release"] == entry["release"]:
        return False
    history = [entry, *(current["history"] if current else [])][:HISTORY_LIMIT]
    manifest["envs"][env] = {**entry, "history": history}
    return True


class ReleaseStore:
    def __init__(self, kv: KVStore, *, cache_size: int = 128, max_attempts: int = 50) -> None:
        self._kv = kv
        self._bundles: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._max_attempts = max_attempts

    async def put_bundle(self, project: str, release_id: str, body: bytes) -> None:
        """Store a compiled release once; an existing bundle already holds these very bytes."""
        if hashlib.sha256(body).hexdigest() != release_id:
            raise BadRequest("bundle does not hash to its release id")
        await self._kv.cas(_bundle_key(project, release_id), None, body)

    async def has_bundle(self, project: str, release_id: str) -> bool:
        return await self._kv.get(_bundle_key(project, release_id)) is not None

    async def get_bundle(self, project: str, release_id: str) -> bytes:
        cache_key = (project, release_id)
        if (cached := self._bundles.get(cache_key)) is not None:
            self._bundles.move_to_end(cache_key)
            return cached
        body = await self._kv.get(_bundle_key(project, release_id))
        if body is None:
            raise NotFound(f"release {release_id} not found")
        if hashlib.sha256(body).hexdigest() != release_id:
            log.error("stored bundle %s of project %s fails its hash check", release_id, project)
            raise ServiceUnavailable("stored release is corrupt")
        self._bundles[cache_key] = body
        if len(self._bundles) > self._cache_size:
            self._bundles.popitem(last=False)
        return body

    async def get_manifest(self, project: str) -> Manifest | None:
        raw = await self._kv.get(_manifest_key(project))
        return None if raw is None else dict(orjson.loads(raw))

    async def publish(self, project: str, env: str, release_id: str, ref: str | None) -> Manifest:
        """Point `env` at a stored bundle; publishing the current release changes nothing."""
        _check_env(env)
        await self.get_bundle(project, release_id)  # never point at a missing or corrupt bundle
        entry = {"release": release_id, "ref": ref, "publishedAt": _now()}
        return await self._update(project, lambda manifest: _point(manifest, env, entry))

    async def rollback(self, project: str, env: str, release_id: str) -> Manifest:
        """Point `env` back at a release from its history; the move is recorded in history."""
        _check_env(env)

        def change(manifest: Manifest) -> bool:
            state = manifest["envs"].get(env) or {"history": []}
            past = next((e for e in state["history"] if e["release"] == release_id), None)
            if past is None:
                raise NotFound(f"release {release_id} is not in the history of {env}")
            entry = {"release": release_id, "ref": past["ref"], "publishedAt": _now()}
            return _point(manifest, env, entry)

        return await self._update(project, change)

    async def promote(self, project: str, from_env: str, to_env: str) -> str:
        """Copy `from_env`'s current release id to `to_env`; returns that id."""
        _check_env(from_env)
        _check_env(to_env)

        def change(manifest: Manifest) -> bool:
            source = manifest["envs"].get(from_env)
            if source is None:
                raise NotFound(f"env {from_env} has no release")
            entry = {"release": source["release"], "ref": source["ref"], "publishedAt": _now()}
            return _point(manifest, to_env, entry)

        manifest = await self._update(project, change)
        return str(manifest["envs"][to_env]["release"])

    async def drop_env(self, project: str, env: str) -> None:
        await self._update(project, lambda manifest: manifest["envs"].pop(env, None) is not None)

    async def delete_project(self, project: str) -> None:
        # The manifest goes first, so no pointer ever names a deleted bundle.
        await self._kv.delete(_manifest_key(project))
        await self._kv.delete(*await self._kv.keys(f"bundle:{_project(project)}:"))
        for cache_key in [key for key in self._bundles if key[0] == project]:
            del self._bundles[cache_key]

    async def _update(self, project: str, change: Callable[[Manifest], bool]) -> Manifest:
        """Read, change, compare-and-set; retry with jittered backoff when another writer won."""
        key = _manifest_key(project)
        for attempt in range(self._max_attempts):
            raw = await self._kv.get(key)
            manifest: Manifest = (
                {"project": project, "revision": 0, "envs": {}}
                if raw is None
                else orjson.loads(raw)
            )
            if not change(manifest):
                return manifest
            manifest["revision"] += 1
            if await self._kv.cas(key, raw, orjson.dumps(manifest)):
                return manifest
            backoff = min(0.1, 0.002 * 2**attempt)
            await asyncio.sleep(random.uniform(0, backoff))  # noqa: S311 (jitter, not a secret)
        raise Conflict(f"the manifest of {project} kept changing; retry")
