"""When each API key was last used (`lastUsedAt`, `docs/admin.md`), written off the request path.

A key's use is recorded at most once a minute: `recent` (a toolkit cache with that TTL) remembers
the keys recorded within the minute, so a busy key costs one registry write a minute, not one per
request, and the memory stays bounded. Recorded uses are written with the usage counters
(`Runtime`'s metering writes, every `STK_USAGE_FLUSH_SECONDS` and at shutdown), every key used
since the last write in one statement: a fleet's cold start, the first use of many keys at once,
costs no registry transaction per key beside the lookups those first requests wait for.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.cache import Cache
from tenancy.registry.models import ApiKey, utcnow

log = logging.getLogger("stk.keyusage")
TOUCH_EVERY = 60.0
_WRITE = (
    update(ApiKey).where(ApiKey.key_id == bindparam("key")).values(last_used_at=bindparam("used"))
)


class KeyUsage:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.recent: Cache[bool] = Cache("apikey_use", TOUCH_EVERY)
        self._pending: dict[str, datetime] = {}  # key id → when it was used

    def touch(self, key_id: str) -> None:
        """Record a use of the key, unless one was recorded within the last minute."""
        if self.recent.lookup((key_id,)) is not None:
            return
        self.recent.put((key_id,), True)
        self._pending[key_id] = utcnow()

    async def write(self) -> None:
        """Write the uses recorded since the last write, in one statement; kept for the next
        write when the registry cannot take it (a use recorded later wins)."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            async with self._sessions() as session, session.begin():
                # On the connection, not the ORM session: one executemany where a key deleted
                # meanwhile matches no row (the ORM's bulk UPDATE would call that an error).
                connection = await session.connection()
                await connection.execute(
                    _WRITE, [{"key": key, "used": used} for key, used in pending.items()]
                )
        except (SQLAlchemyError, OSError):
            log.warning("could not record the use of %d API keys; retrying later", len(pending))
            self._pending = pending | self._pending
