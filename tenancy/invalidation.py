"""Invalidation of cached tenant state across replicas (`docs/tenancy.md`, "Invalidation").

Admin changes call `publish`; every process applies it locally at once and, when Redis is
configured, broadcasts it so other replicas mark the same entries stale. The message carries no
secret: only `{"kind", "project", "env", "origin"}`.

The channel is `<prefix>stk:invalidate` on database 0 and `<prefix>stk:invalidate:<N>` on
database N: Redis pub/sub ignores the database number, so two deployments on one server with
different `/N` (or different `?prefix=`) must not hear each other.

Redis going away loses nothing silently: a broadcast is sent by a background sender that
retries with back-off until Redis takes it (an admin call never waits on Redis), and the
subscriber re-subscribes after any error — including a silent connection, found by its own PING
— and then marks everything stale (`resync`), since it cannot know what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from tenancy.redis_url import RedisOptions, connect

CHANNEL = "stk:invalidate"
RESYNC = "resync"
PENDING_MAX = 1000  # past it, the queued broadcasts collapse into one resync
RETRY_MAX_SECONDS = 2.0
log = logging.getLogger("stk.invalidation")
Handler = Callable[[str, str | None, str | None], None]


def channel_name(prefix: str, db: int) -> str:
    return prefix + CHANNEL + (f":{db}" if db else "")


class InvalidationBus:
    def __init__(self, redis_url: str | None, options: RedisOptions | None = None) -> None:
        self._handlers: list[Handler] = []
        self._redis: aioredis.Redis | None = None
        self._options = options or RedisOptions()
        self.channel = CHANNEL
        if redis_url:
            redis = connect(redis_url, self._options)
            self._redis = redis.client
            self.channel = channel_name(redis.prefix, redis.db)
        self._origin = uuid.uuid4().hex
        self._pending: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        self.received = 0
        self.resyncs = 0  # subscriptions (re)established, each followed by a resync

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def _apply(self, kind: str, project: str | None, env: str | None) -> None:
        self.received += 1
        for handler in self._handlers:
            handler(kind, project, env)

    async def publish(self, kind: str, project: str | None, env: str | None = None) -> None:
        """Apply here now; queue the broadcast (sent, and retried, by the sender task)."""
        self._apply(kind, project, env)
        if self._redis is None:
            return
        if len(self._pending) >= PENDING_MAX:
            self._pending.clear()
            kind, project, env = RESYNC, None, None
        message = {"kind": kind, "project": project, "env": env, "origin": self._origin}
        self._pending.append(orjson.dumps(message))
        self._drained.clear()
        self._wake.set()

    async def flushed(self) -> bool:
        """Has Redis taken every queued broadcast? Waits one socket timeout at most."""
        if self._redis is None or self._drained.is_set():
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), self._options.socket_timeout)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        if self._redis is not None:
            ready = asyncio.Event()
            self._tasks = (
                asyncio.create_task(self._listen(ready)),
                asyncio.create_task(self._send()),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 5)

    async def _send(self) -> None:
        """Publish queued broadcasts in order; on failure retry the same one with back-off."""
        assert self._redis is not None
        delay = 0.05
        while True:
            if not self._pending:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            sending = self._pending[0]
            try:
                await self._redis.publish(self.channel, sending)
            except (OSError, aioredis.RedisError):
                log.warning("invalidation broadcast failed; retrying in %.2gs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            if self._pending and self._pending[0] is sending:
                self._pending.popleft()
            delay = 0.05

    async def _listen(self, ready: asyncio.Event) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self._read(pubsub, ready)
            except asyncio.CancelledError:
                raise
            except (OSError, aioredis.RedisError):
                log.warning("invalidation channel lost; reconnecting")
                await asyncio.sleep(0.2)
            except Exception:
                # The listener must outlive any surprise, or peers fall back to the cache TTL.
                log.exception("invalidation listener failed; restarting")
                await asyncio.sleep(1)

    async def _read(self, pubsub: Any, ready: asyncio.Event) -> None:
        """Apply messages until the connection fails or stays silent past a PING's answer.

        redis-py reconnects a pub/sub connection broken under it and subscribes again on its
        own; either way Redis confirms each subscription, and that confirmation is where a
        resync happens: whatever was published while we were not subscribed is unknown, so
        everything is marked stale (not gone: `docs/tenancy.md`, stale-while-error)."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        idle = self._options.health_check_seconds
        while True:
            message = await pubsub.get_message(timeout=min(1.0, idle))
            now = loop.time()
            if message is not None:
                heard = now
                if message.get("type") == "message":
                    self._receive(message["data"])
                elif message.get("type") == "subscribe":
                    ready.set()
                    self.resyncs += 1
                    self._apply(RESYNC, None, None)
                continue
            if now - heard > idle + self._options.socket_timeout:
                raise aioredis.ConnectionError("invalidation channel silent: no answer to PING")
            if now - heard > idle:
                await pubsub.ping()

    def _receive(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(message, dict) and message.get("origin") != self._origin:
            self._apply(str(message.get("kind")), message.get("project"), message.get("env"))

    async def close(self) -> None:
        """Stop listening; give queued broadcasts one socket timeout to go out first."""
        if self._tasks:
            await self.flushed()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._redis is not None:
            await self._redis.aclose()
