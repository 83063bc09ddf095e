"""When each API key was last used (`lastUsedAt`, `docs/admin.md`), written off the request path.

A key's use is written at most once a minute: `recent` (a toolkit cache with that TTL) remembers
the keys written within the minute, so a busy key costs one registry write a minute, not one per
request, and the memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.cache import Cache
from tenancy.registry.models import ApiKey, utcnow

log = logging.getLogger("stk.keyusage")
TOUCH_EVERY = 60.0


class KeyUsage:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.recent: Cache[bool] = Cache("apikey_use", TOUCH_EVERY)
        self._writes: set[asyncio.Task[None]] = set()

    def touch(self, key_id: str) -> None:
        """Record a use of the key, unless one was recorded within the last minute."""
        if self.recent.lookup((key_id,)) is not None:
            return
        self.recent.put((key_id,), True)
        task = asyncio.get_running_loop().create_task(self._write(key_id))
        self._writes.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._writes.discard)

    async def _write(self, key_id: str) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(ApiKey).where(ApiKey.key_id == key_id).values(last_used_at=utcnow())
                )
        except (SQLAlchemyError, OSError):
            log.warning("could not record API key use")
