"""KV on Redis for multi-replica deployments; `cas` is one Lua script, so it is atomic.

Durability of `set` is whatever the server's persistence (AOF/RDB) gives; run it with AOF on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from redis.exceptions import RedisError

from tenancy.errors import ServiceUnavailable
from tenancy.kv import KVStore
from tenancy.redis_url import RedisClient

# ARGV: has_expected ("1"/"0"), expected, has_value ("1"/"0"), value.
_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[4]) else redis.call('DEL', KEYS[1]) end
return 1
"""


@contextmanager
def _guard() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(f"KV store (redis) unavailable: {type(exc).__name__}") from exc


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisKV(KVStore):
    def __init__(self, redis: RedisClient) -> None:
        # Timeouts, retry and health checks: `tenancy/redis_url.py`.
        self._prefix = redis.prefix
        self._client = redis.client
        self._cas_script = self._client.register_script(_CAS)

    async def get(self, key: str) -> bytes | None:
        with _guard():
            value = await self._client.get(self._prefix + key)
        return cast(bytes | None, value)  # decode_responses is off: always bytes

    async def set(self, key: str, value: bytes) -> None:
        with _guard():
            await self._client.set(self._prefix + key, value)

    async def cas(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        args = [
            "0" if expected is None else "1",
            expected or b"",
            "0" if value is None else "1",
            value or b"",
        ]
        with _guard():
            swapped = await self._cas_script(keys=[self._prefix + key], args=args)
        return bool(swapped)

    async def delete(self, *keys: str) -> None:
        if keys:
            with _guard():
                await self._client.delete(*(self._prefix + key for key in keys))

    async def keys(self, prefix: str) -> list[str]:
        start = len(self._prefix)
        pattern = _glob_escape(self._prefix + prefix) + "*"
        with _guard():
            found = [key async for key in self._client.scan_iter(match=pattern, count=1000)]
        return sorted(key.decode()[start:] for key in found)

    async def ping(self) -> None:
        with _guard():
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
