"""KV as one file per key under a directory: the embedded default, safe across processes.

A write goes to a temp file that is fsynced, renamed over the key's file, then the directory is
fsynced: a crash leaves the old value or the new one, never a torn one. Writers serialize on an
flock'ed lock file so `cas` holds across every process sharing the directory; readers need no lock
because rename is atomic.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

from tenancy.errors import ServiceUnavailable
from tenancy.kv import KVStore

T = TypeVar("T")
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_NAME = 255


def _filename(key: str) -> str:
    """Percent-encode all but `[a-z0-9_-]`.

    No '/' and no '.' can appear, so no traversal and no clash with the dot-named lock and temp
    files; upper case is encoded too, so keys stay distinct on case-insensitive filesystems.
    """
    name = "".join(c if c in _SAFE else "".join(f"%{b:02x}" for b in c.encode()) for c in key)
    if not name or len(name) > _MAX_NAME:
        raise ValueError(f"KV key is empty or too long for the file backend: {key[:80]!r}")
    return name


class FileKV(KVStore):
    def __init__(self, root: str) -> None:
        self._root = Path(root)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceUnavailable(
                f"KV directory {root} is not usable: {exc}", dependency="KV store"
            ) from exc

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._read, _filename(key))

    async def set(self, key: str, value: bytes) -> None:
        await self._run(self._set, _filename(key), value)

    async def cas(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        return await self._run(self._cas, _filename(key), expected, value)

    async def delete(self, *keys: str) -> None:
        await self._run(self._delete, [_filename(key) for key in keys])

    async def keys(self, prefix: str) -> list[str]:
        return await self._run(self._keys, prefix)

    async def ping(self) -> None:
        await self._run(self._ping)

    async def close(self) -> None:
        return None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise ServiceUnavailable(
                f"KV directory {self._root} failed: {exc}", dependency="KV store"
            ) from exc

    # Blocking parts, run in a worker thread.

    def _read(self, name: str) -> bytes | None:
        try:
            return (self._root / name).read_bytes()
        except FileNotFoundError:
            return None

    def _set(self, name: str, value: bytes) -> None:
        with self._locked():
            self._write(name, value)

    def _cas(self, name: str, expected: bytes | None, value: bytes | None) -> bool:
        with self._locked():
            if self._read(name) != expected:
                return False
            if value is not None:
                self._write(name, value)
            elif self._unlink(name):
                self._sync_dir()
            return True

    def _delete(self, names: list[str]) -> None:
        with self._locked():
            removed = [self._unlink(name) for name in names]
            if any(removed):
                self._sync_dir()

    def _keys(self, prefix: str) -> list[str]:
        found = (unquote(name) for name in os.listdir(self._root) if not name.startswith("."))
        return sorted(key for key in found if key.startswith(prefix))

    def _ping(self) -> None:
        if not self._root.is_dir() or not os.access(self._root, os.W_OK):
            raise ServiceUnavailable(
                f"KV directory {self._root} is missing or not writable", dependency="KV store"
            )

    def _write(self, name: str, value: bytes) -> None:
        tmp = self._root / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(value)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._root / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._sync_dir()

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(self._root / name)
        except FileNotFoundError:
            return False
        return True

    def _sync_dir(self) -> None:
        fd = os.open(self._root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
