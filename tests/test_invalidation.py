"""The invalidation channel on real Redis (`tenancy/invalidation.py`, `docs/tenancy.md`):
namespaced by database number and prefix, broadcasts retried until Redis takes them, and a
subscriber that comes back after its connection was cut or went silent, marking everything
stale when it does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from tenancy.invalidation import InvalidationBus
from tenancy.redis_url import RedisOptions

from support.faults import TcpProxy

FAST = RedisOptions(connect_timeout=0.5, socket_timeout=0.5, health_check_seconds=0.5)
Seen = list[tuple[str, str | None, str | None]]


@asynccontextmanager
async def bus(url: str) -> AsyncIterator[tuple[InvalidationBus, Seen]]:
    seen: Seen = []
    started = InvalidationBus(url, FAST)
    started.subscribe(lambda kind, project, env: seen.append((kind, project, env)))
    await started.start()
    try:
        yield started, seen
    finally:
        await started.close()


def on_db(redis_url: str, db: int) -> str:
    return urlsplit(redis_url)._replace(path=f"/{db}").geturl()


def through(redis_url: str, proxy: TcpProxy) -> str:
    return urlsplit(redis_url)._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> float:
    """Seconds until `condition()` held (fails the test past `seconds`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def silence(proxy: TcpProxy) -> None:
    """Connections in flight stay open but carry nothing more (the proxy stops reading them);
    `TcpProxy` has no such mode, so its open connections are paused here."""
    for writer in list(proxy._writers):
        writer.transport.pause_reading()


def changes(seen: Seen) -> Seen:
    return [event for event in seen if event[0] != "resync"]


async def test_deployments_on_other_databases_of_one_redis_do_not_hear_each_other(
    redis_url: str,
) -> None:
    async with (
        bus(on_db(redis_url, 1)) as (one, _),
        bus(on_db(redis_url, 2)) as (_, two_seen),
        bus(on_db(redis_url, 1)) as (_, peer_seen),
    ):
        assert one.channel.endswith("stk:invalidate:1")
        await one.publish("release.publish", "shop", "prod")
        await until(lambda: changes(peer_seen) == [("release.publish", "shop", "prod")])
        await asyncio.sleep(0.2)
        assert changes(two_seen) == []
    async with bus(on_db(redis_url, 0)) as (zero, _):
        assert zero.channel.endswith("stk:invalidate")  # database 0 keeps the former name


async def test_a_broadcast_made_while_redis_is_unreachable_is_sent_when_it_is_back(
    redis_url: str,
) -> None:
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.accept()
    try:
        async with bus(through(redis_url, proxy)) as (sender, _), bus(redis_url) as (_, seen):
            await proxy.refuse()
            started = time.monotonic()
            await sender.publish("apikey.revoke", "shop", "prod")
            assert time.monotonic() - started < 0.1  # the admin call does not wait on Redis
            await asyncio.sleep(1.0)
            assert changes(seen) == []
            await proxy.accept()
            await until(lambda: changes(seen) == [("apikey.revoke", "shop", "prod")])
    finally:
        await proxy.close()


@pytest.mark.parametrize("fault", ["cut", "silent"])
async def test_the_subscriber_comes_back_and_marks_everything_stale(
    redis_url: str, fault: str
) -> None:
    """Cut: the connection drops (Redis restarted). Silent: it stays open and answers nothing
    (Redis hung, or a network path gone); the subscriber's own PING finds out."""
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.accept()
    try:
        async with bus(redis_url) as (publisher, _), bus(through(redis_url, proxy)) as (sub, seen):
            assert sub.resyncs == 1 and seen == [("resync", None, None)]
            if fault == "cut":
                proxy.cut()
            else:
                silence(proxy)
            await asyncio.sleep(0.3)
            proxy.mode = "pass"
            await until(lambda: sub.resyncs == 2, seconds=8)
            assert seen[-1] == ("resync", None, None)
            await publisher.publish("release.publish", "shop", "prod")
            await until(lambda: ("release.publish", "shop", "prod") in seen, seconds=1)
    finally:
        await proxy.close()
