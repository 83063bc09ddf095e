"""Usage metering per (project, env, UTC day) (`docs/admin.md`, "Usage").

The request path only adds to a dict in memory; the runtime's metering writes move the counts to
the registry in one batch every `STK_USAGE_FLUSH_SECONDS`, adding them to the stored totals (an
upsert), so replicas sum up and none pays I/O per request. `close` flushes what is left (a SIGTERM
loses nothing; a SIGKILL at most one interval). A failed flush keeps its counts for the next one.

Counters (`metric` names): `requests.<kind>.<class>` (kind `db`, `logics`, `storage`, `auth`;
class `2xx`, `4xx`, `5xx`), `rows.read`, `rows.written`, `db.ms` (time in the call's database or
store work), `bytes.in`, `bytes.out`, `logins`, `storage.signatures`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.principal import Tenant
from tenancy.registry.models import UsageCounter

log = logging.getLogger("stk.usage")
EPOCH = date(1970, 1, 1)
Key = tuple[str, str, int, str]  # project, env, days since the epoch (UTC), metric


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def _today() -> int:
    return int(time.time() // 86400)


class Usage:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._counts: defaultdict[Key, int] = defaultdict(int)
        self._lock = asyncio.Lock()

    def add(self, tenant: Tenant, metric: str, amount: int = 1) -> None:
        """Count `amount` for today (UTC): a dict update, never I/O."""
        self._counts[(tenant.project, tenant.env, _today(), metric)] += amount

    def request(self, tenant: Tenant, kind: str, status: int, received: int, sent: int) -> None:
        """One answered request of an admitted tenant (the HTTP layer's part)."""
        counts, day = self._counts, _today()
        counts[(tenant.project, tenant.env, day, f"requests.{kind}.{status_class(status)}")] += 1
        counts[(tenant.project, tenant.env, day, "bytes.in")] += received
        counts[(tenant.project, tenant.env, day, "bytes.out")] += sent

    def call(self, tenant: Tenant, kind: str, op: str, data: Any, seconds: float) -> None:
        """What one successful `/call` did (the pipeline's part, `tenancy/calls.py`)."""
        self.add(tenant, "db.ms", round(seconds * 1000))
        if isinstance(data, list):
            self.add(tenant, "rows.read", len(data))
        elif kind == "storage":
            if op.endswith("sign"):
                self.add(tenant, "storage.signatures")
        elif "affected" in data:
            self.add(tenant, "rows.written", int(data["affected"]))
        else:
            self.add(tenant, "rows.written")  # an insert answers the row it wrote

    async def flush(self) -> None:
        """Add the counts so far to the registry's totals, in one transaction."""
        async with self._lock:
            pending, self._counts = self._counts, defaultdict(int)
            if not pending:
                return
            rows = [
                {
                    "project": project,
                    "env": env,
                    "day": EPOCH + timedelta(days=day),
                    "metric": metric,
                    "value": value,
                }
                for (project, env, day, metric), value in pending.items()
            ]
            try:
                async with self._sessions() as session, session.begin():
                    await session.execute(_upsert(session, rows))
            except (SQLAlchemyError, OSError):
                log.warning("usage flush failed; %d counters kept for the next one", len(rows))
                for key, value in pending.items():
                    self._counts[key] += value

    async def daily(
        self, project: str, first: date, last: date, env: str | None
    ) -> list[dict[str, Any]]:
        """`[{"day", "env", "counters": {metric: total}}]`, oldest first, over every replica."""
        query = (
            select(UsageCounter)
            .where(
                UsageCounter.project == project,
                UsageCounter.day >= first,
                UsageCounter.day <= last,
            )
            .order_by(UsageCounter.day, UsageCounter.env, UsageCounter.metric)
        )
        if env is not None:
            query = query.where(UsageCounter.env == env)
        days: dict[tuple[date, str], dict[str, int]] = {}
        async with self._sessions() as session:
            for row in (await session.scalars(query)).all():
                days.setdefault((row.day, row.env), {})[row.metric] = row.value
        return [
            {"day": day.isoformat(), "env": env_id, "counters": counters}
            for (day, env_id), counters in days.items()
        ]


def _upsert(session: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE value = value + excluded.value, on either engine."""
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(UsageCounter)
    statement = statement.values(rows)
    return statement.on_conflict_do_update(
        index_elements=["project", "env", "day", "metric"],
        set_={"value": UsageCounter.value + statement.excluded.value},
    )
