"""Invalidation of cached tenant state across replicas.

Admin changes call `publish`; every process applies it locally at once and, when Redis is
configured, broadcasts it on `stk:invalidate` so other replicas drop the same entries. The
message carries no secret: only `{"kind", "project", "env", "origin"}`. A `?prefix=ns:` on the
Redis URL (shared with the KV store) namespaces the channel too (`ns:stk:invalidate`), so
deployments sharing one Redis do not disturb each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from tenancy.redis_url import split_prefix

CHANNEL = "stk:invalidate"
log = logging.getLogger("stk.invalidation")
Handler = Callable[[str, str | None, str | None], None]


class InvalidationBus:
    def __init__(self, redis_url: str | None) -> None:
        self._handlers: list[Handler] = []
        self._redis: aioredis.Redis | None = None
        self.channel = CHANNEL
        if redis_url:
            url, prefix = split_prefix(redis_url)
            self.channel = prefix + CHANNEL
            self._redis = aioredis.Redis.from_url(url)
        self._origin = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self.received = 0

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def _apply(self, kind: str, project: str | None, env: str | None) -> None:
        self.received += 1
        for handler in self._handlers:
            handler(kind, project, env)

    async def publish(self, kind: str, project: str | None, env: str | None = None) -> None:
        self._apply(kind, project, env)
        if self._redis is None:
            return
        message = {"kind": kind, "project": project, "env": env, "origin": self._origin}
        try:
            await self._redis.publish(self.channel, orjson.dumps(message))
        except (OSError, aioredis.RedisError):
            log.error("invalidation broadcast failed; peers fall back to the cache TTL")

    async def start(self) -> None:
        if self._redis is not None:
            ready = asyncio.Event()
            self._task = asyncio.create_task(self._listen(ready))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 5)

    async def _listen(self, ready: asyncio.Event) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    ready.set()
                    # Whatever happened while we were not listening is unknown: drop it all.
                    self._apply("resync", None, None)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except (OSError, aioredis.RedisError):
                log.warning("invalidation channel lost; reconnecting")
                await asyncio.sleep(1)
            except Exception:
                # The listener must outlive any surprise, or peers fall back to the cache TTL.
                log.exception("invalidation listener failed; restarting")
                await asyncio.sleep(1)

    def _receive(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(message, dict) and message.get("origin") != self._origin:
            self._apply(str(message.get("kind")), message.get("project"), message.get("env"))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()
