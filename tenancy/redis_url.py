"""Redis clients, built in one place (`docs/operations.md`, "Redis"): our `?prefix=ns:` option
on Redis URLs (a key namespace, so fleets or test runs can share one Redis; redis-py would
reject the unknown option, so it is taken off the URL here, once), and the bounds every client
gets — connect and socket timeouts, health checks, and a retry with exponential back-off that
covers a broken connection (a Redis restart) but never a timeout, so a hung Redis costs one
socket timeout per command, not one per retry."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def split_prefix(url: str) -> tuple[str, str]:
    """(the URL redis-py understands, the key prefix or "")."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", [""])[0]
    return parts._replace(query=urlencode(query, doseq=True)).geturl(), prefix


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """`STK_REDIS_*` (`tenancy/settings.py`); the defaults are the settings' defaults."""

    connect_timeout: float = 1.0
    socket_timeout: float = 2.0
    health_check_seconds: float = 10.0
    retries: int = 2


@dataclass(frozen=True, slots=True)
class RedisClient:
    client: aioredis.Redis
    prefix: str  # the URL's `?prefix=`, for keys and channels
    db: int  # the database number (`/N` or `?db=N`), for channels: pub/sub ignores databases


def connect(url: str, options: RedisOptions) -> RedisClient:
    """A client for `url` (with or without `?prefix=`); connects lazily."""
    plain, prefix = split_prefix(url)
    retry = Retry(
        ExponentialBackoff(cap=0.5, base=0.05),
        options.retries,
        supported_errors=(RedisConnectionError,),
    )
    client = aioredis.Redis.from_url(
        plain,
        socket_connect_timeout=options.connect_timeout,
        socket_timeout=options.socket_timeout,
        health_check_interval=options.health_check_seconds,
        retry=retry,
        retry_on_timeout=False,
    )
    db = int(client.connection_pool.connection_kwargs.get("db") or 0)
    return RedisClient(client, prefix, db)
