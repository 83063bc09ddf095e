"""In-process KV for tests and single-process runs; one event loop makes every method atomic."""

from __future__ import annotations

from tenancy.kv import KVStore


class MemoryKV(KVStore):
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self._data[key] = bytes(value)

    async def cas(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        if self._data.get(key) != expected:
            return False
        if value is None:
            self._data.pop(key, None)
        else:
            self._data[key] = bytes(value)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self._data if key.startswith(prefix))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
