"""Release pointer moves that are never left unaudited or unannounced (issue 8, `docs/admin.md`).

The manifest lives in the KV store and the audit log in the registry: no transaction spans
both. So a move (publish, rollback, promote) is written down first, as an intent in the
registry's `publish_outbox`, and finished in order:

1. `intend`: the intent row (action, tenant, the move's `publishedAt`, actor, detail) commits;
2. the manifest moves, its new history entry stamped with that `publishedAt`;
3. `complete`: one transaction marks the intent audited and writes the audit entry — an atomic
   claim, so the entry is written once whoever completes it;
4. the change is broadcast and, once Redis took it, the intent is deleted.

A process killed anywhere leaves the intent behind. `drain` (at start and every
`DRAIN_EVERY_SECONDS`, on every replica) finishes each one: if the env's history holds the
entry stamped with the intent's `publishedAt`, the move happened — steps 3 and 4 run (both
idempotent); if not and the intent is older than `ABANDON_AFTER_SECONDS` (a live move finishes
or fails well within it: the KV store's timeouts bound it), the move never happened — the
intent is deleted and the old release stays, unaudited because it never went live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy import audit
from tenancy.audit import Actor
from tenancy.errors import ServiceUnavailable, StkError
from tenancy.ids import new_ulid
from tenancy.invalidation import InvalidationBus
from tenancy.registry.models import PublishIntent, utcnow
from tenancy.releases.manifest import now
from tenancy.releases.store import ReleaseStore

log = logging.getLogger("stk.outbox")
DRAIN_EVERY_SECONDS = 10.0
ABANDON_AFTER_SECONDS = 60.0
Sessions = async_sessionmaker[AsyncSession]


class Outbox:
    def __init__(self, sessions: Sessions, releases: ReleaseStore, bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._releases = releases
        self._bus = bus

    async def move(
        self,
        actor: Actor,
        action: str,
        project: str,
        env: str,
        moving: Callable[[str], Awaitable[str]],
        **detail: Any,
    ) -> str:
        """Run `moving(published_at)` (the manifest move; answers the release now current)
        between the intent and its completion; answers that release."""
        intent = PublishIntent(
            id=new_ulid(),
            action=action,
            project=project,
            env=env,
            published_at=now(),
            actor=actor.name,
            request_id=actor.request_id,
            detail=detail,
            audited=False,
        )
        async with self._sessions() as session, session.begin():
            session.add(intent)
        try:
            release = await moving(intent.published_at)
        except StkError as exc:
            # Refused (unknown release, conflict): no move. Unavailable: unknown whether the
            # KV store applied it, so the intent stays and the drain decides by the history.
            if not isinstance(exc, ServiceUnavailable):
                await self._forget(intent.id, quietly=True)
            raise
        await self.complete(intent, release)
        return release

    async def complete(self, intent: PublishIntent, release: str) -> None:
        """Steps 3 and 4: audit once (whoever claims the intent), announce, forget."""
        async with self._sessions() as session, session.begin():
            claimed = await session.execute(
                update(PublishIntent)
                .where(PublishIntent.id == intent.id, PublishIntent.audited.is_(False))
                .values(audited=True)
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                actor = Actor(intent.actor, intent.request_id)
                detail = {**intent.detail, "release": release}
                audit.record(session, actor, intent.action, intent.project, intent.env, **detail)
        await self._bus.publish(intent.action, intent.project, intent.env)
        if await self._bus.flushed():
            await self._forget(intent.id, quietly=True)
        # Else Redis did not take it yet: the bus keeps retrying, and the intent stays for the
        # drain to announce again should this process die first.

    async def drain(self) -> int:
        """Finish or drop every intent a process left behind; answers how many were handled."""
        async with self._sessions() as session:
            intents = (await session.scalars(select(PublishIntent))).all()
        handled = 0
        for intent in intents:
            try:
                manifest = await self._releases.get_manifest(intent.project)
            except ServiceUnavailable:
                log.warning("KV store unavailable: publish outbox not drained; retrying later")
                break
            pointer = manifest.envs.get(intent.env) if manifest is not None else None
            entry = (
                next(
                    (e for e in pointer.history if e.published_at == intent.published_at),
                    None,
                )
                if pointer is not None
                else None
            )
            if entry is not None:
                log.info("finishing %s of %s/%s", intent.action, intent.project, intent.env)
                await self.complete(intent, entry.release)
                handled += 1
            elif utcnow() - intent.created_at > timedelta(seconds=ABANDON_AFTER_SECONDS):
                log.info(
                    "dropping %s of %s/%s: it never moved the manifest",
                    intent.action,
                    intent.project,
                    intent.env,
                )
                await self._forget(intent.id)
                handled += 1
        return handled

    async def drain_periodically(self) -> None:
        while True:
            try:
                await self.drain()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("publish outbox drain failed (%s); retrying later", exc)
            await asyncio.sleep(DRAIN_EVERY_SECONDS)

    async def _forget(self, intent_id: str, *, quietly: bool = False) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(delete(PublishIntent).where(PublishIntent.id == intent_id))
        except (SQLAlchemyError, OSError):
            if not quietly:
                raise
            log.warning("publish intent %s left for the drain", intent_id)
