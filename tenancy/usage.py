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
Day = tuple[str, str, int]  # project, env, days since the epoch (UTC)
# `requests.<kind>.<class>` by kind, indexed by status // 100: built once per kind.
_REQUESTS: dict[str, tuple[str, ...]] = {}


def _today() -> int:
    return int(time.time() // 86400)


class Usage:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # One counter dict per tenant and day: a request looks its tenant's up once.
        self._counts: dict[Day, defaultdict[str, int]] = {}
        self._lock = asyncio.Lock()

    def _day(self, tenant: Tenant) -> defaultdict[str, int]:
        key = (tenant.project, tenant.env, _today())
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = defaultdict(int)
        return counts

    def add(self, tenant: Tenant, metric: str, amount: int = 1) -> None:
        """Count `amount` for today (UTC): a dict update, never I/O."""
        self._day(tenant)[metric] += amount

    def request(self, tenant: Tenant, kind: str, status: int, received: int, sent: int) -> None:
        """One answered request of an admitted tenant (the HTTP layer's part)."""
        counts = self._day(tenant)
        names = _REQUESTS.get(kind)
        if names is None:
            names = _REQUESTS[kind] = tuple(f"requests.{kind}.{n}xx" for n in range(10))
        counts[names[status // 100]] += 1
        counts["bytes.in"] += received
        counts["bytes.out"] += sent

    def call(self, tenant: Tenant, kind: str, op: str, data: Any, seconds: float) -> None:
        """What one successful `/call` did (the pipeline's part, `tenancy/calls.py`)."""
        counts = self._day(tenant)
        counts["db.ms"] += round(seconds * 1000)
        if isinstance(data, list):
            counts["rows.read"] += len(data)
        elif kind == "storage":
            if op.endswith("sign"):
                counts["storage.signatures"] += 1
        elif "affected" in data:
            counts["rows.written"] += int(data["affected"])
        else:
            counts["rows.written"] += 1  # an insert answers the row it wrote

    async def flush(self) -> None:
        """Add the counts so far to the registry's totals, in one transaction."""
        async with self._lock:
            pending, self._counts = self._counts, {}
            rows = [
                {
                    "project": project,
                    "env": env,
                    "day": EPOCH + timedelta(days=day),
                    "metric": metric,
                    "value": value,
                }
                for (project, env, day), counts in pending.items()
                for metric, value in counts.items()
            ]
            if not rows:
                return
            try:
                async with self._sessions() as session, session.begin():
                    await session.execute(_upsert(session, rows))
            except (SQLAlchemyError, OSError):
                log.warning("usage flush failed; %d counters kept for the next one", len(rows))
                for key, counts in pending.items():
                    kept = self._counts.setdefault(key, defaultdict(int))
                    for metric, value in counts.items():
                        kept[metric] += value

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
