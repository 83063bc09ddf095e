"""The publish outbox (`tenancy/outbox.py`) on both registry engines: the states a process
killed between the steps of a pointer move leaves behind, and what the drain makes of them —
a move that happened is audited once and announced; one that never happened is dropped after
`ABANDON_AFTER_SECONDS`; a refused move leaves nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tenancy.audit import Actor
from tenancy.outbox import ABANDON_AFTER_SECONDS
from tenancy.registry.models import AuditEntry, PublishIntent, utcnow
from tenancy.releases.compile.compiler import compile_release

from support.bridge import Bridge, running_bridge
from support.world import World, demo_files

ACTOR = Actor("admin:test", "req-1")


class Killed(BaseException):
    """The process dies here: nothing after this line of the move runs."""


async def stored_release(bridge: Bridge, n: int) -> str:
    compiled = compile_release(demo_files(**{f"c{n}": f"SELECT {n} AS n"}), connections={"main"})
    await bridge.rt.releases.put_bundle("shop", compiled.id, compiled.body)
    return compiled.id


async def audit_releases(bridge: Bridge) -> list[str]:
    async with bridge.rt.sessions() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return [row.detail["release"] for row in rows if row.action == "release.publish"]


async def intents(bridge: Bridge) -> int:
    async with bridge.rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(PublishIntent)) or 0)


@pytest.fixture
async def shop(tmp_path: Path, registry_url: str) -> AsyncIterator[Bridge]:
    async with running_bridge(tmp_path, registry_url=registry_url) as bridge:
        await World(bridge).demo("shop")
        yield bridge


async def test_a_move_killed_before_its_audit_is_audited_once_and_announced(shop: Bridge) -> None:
    rt = shop.rt
    release = await stored_release(shop, 1)
    before = await audit_releases(shop)

    async def moving(at: str) -> str:
        await rt.releases.publish("shop", "prod", release, None, at)
        raise Killed

    with pytest.raises(Killed):
        await rt.outbox.move(ACTOR, "release.publish", "shop", "prod", moving)
    # Live, unaudited, unannounced: exactly what a kill -9 after the move leaves.
    assert (await rt.releases.get_manifest("shop")).release("prod") == release  # type: ignore[union-attr]
    assert await audit_releases(shop) == before and await intents(shop) == 1
    announced = rt.bus.received
    assert await rt.outbox.drain() == 1
    assert await audit_releases(shop) == [*before, release]
    assert rt.bus.received == announced + 1 and await intents(shop) == 0
    assert await rt.outbox.drain() == 0  # idempotent: nothing left, nothing audited twice
    assert await audit_releases(shop) == [*before, release]
    # Served: the announcement marked the cached manifest stale.
    answer = await World(shop).call("logics/c1", project="shop")
    assert answer.status_code == 200, answer.text


async def test_a_move_killed_before_the_manifest_moved_is_dropped_later(shop: Bridge) -> None:
    rt = shop.rt
    current = (await rt.releases.get_manifest("shop")).release("prod")  # type: ignore[union-attr]
    release = await stored_release(shop, 2)

    async def moving(at: str) -> str:
        raise Killed

    with pytest.raises(Killed):
        await rt.outbox.move(ACTOR, "release.publish", "shop", "prod", moving)
    assert await rt.outbox.drain() == 0 and await intents(shop) == 1  # may still be under way
    async with rt.sessions() as session, session.begin():
        past = utcnow() - timedelta(seconds=ABANDON_AFTER_SECONDS + 1)
        await session.execute(update(PublishIntent).values(created_at=past))
    assert await rt.outbox.drain() == 1 and await intents(shop) == 0
    assert (await rt.releases.get_manifest("shop")).release("prod") == current  # type: ignore[union-attr]
    assert release not in await audit_releases(shop)


async def test_a_refused_move_leaves_no_intent(shop: Bridge) -> None:
    rollback = {"release": "0" * 64}
    await shop.admin("POST", "/projects/shop/envs/prod/releases/rollback", 404, json=rollback)
    assert await intents(shop) == 0


async def test_completing_twice_audits_once(shop: Bridge) -> None:
    """The owner and a drain may both complete a move: the claim lets one write the entry."""
    rt = shop.rt
    release = await stored_release(shop, 3)
    before = await audit_releases(shop)
    captured: list[str] = []

    async def moving(at: str) -> str:
        captured.append(at)
        await rt.releases.publish("shop", "prod", release, None, at)
        await rt.outbox.drain()  # a drain on another replica finishes it meanwhile
        return release

    await rt.outbox.move(ACTOR, "release.publish", "shop", "prod", moving)
    assert await audit_releases(shop) == [*before, release] and await intents(shop) == 0
