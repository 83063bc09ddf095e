"""The typed project `limits` (`docs/admin.md`) and the concurrency slot (`docs/tenancy.md` I7):
parsed and checked in one place, unset limits falling back to the process-wide setting; the
password-hash bulkhead's places, turns and thread priority."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from tenancy.errors import BadRequest, ServiceUnavailable, TooManyRequests
from tenancy.limits import (
    CallerLimits,
    FairPool,
    HashBulkhead,
    Limiters,
    Limits,
    RateState,
    allowed,
    results,
)
from tenancy.principal import ANONYMOUS, Principal, Tenant

SHOP = Tenant("shop", "prod")
USER = Principal("user", "u1")
KEY = Principal("api_key", "k1")
ADDRESS = "203.0.113.7"


def test_the_json_form_round_trips_with_only_set_limits() -> None:
    raw = {"maxPoolSize": 2, "requestsPerMinute": 600}
    limits = Limits.parse(raw)
    assert limits == Limits(max_pool_size=2, requests_per_minute=600)
    assert limits.statement_timeout_ms is None and limits.max_concurrency is None
    assert limits.to_json() == raw
    assert Limits.parse({}).to_json() == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"poolSize": 5}, "Unknown limit: poolSize"),
        ({"maxPoolSize": "5"}, "Limit maxPoolSize must be an integer between 1 and 1000000"),
        ({"maxConcurrency": True}, "Limit maxConcurrency must be an integer between 1 and 1000000"),
        ({"statementTimeoutMs": 0}, "between 1 and 1000000"),
        ({"requestsPerMinute": 1_000_001}, "between 1 and 1000000"),
        ({"maxPoolSize": 1.5}, "between 1 and 1000000"),
    ],
)
def test_anything_else_is_a_400(raw: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Limits.parse(raw)


def test_limits_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Limits().max_pool_size = 3  # type: ignore[misc]


async def test_the_slot_sheds_past_the_project_limit_or_the_default() -> None:
    limiters = Limiters(None, max_concurrency=2)
    try:
        own = Limits(max_concurrency=1)
        with limiters.slot(SHOP, own):
            with pytest.raises(ServiceUnavailable), limiters.slot(SHOP, own):
                pass
            # Another tenant has its own count.
            with limiters.slot(Tenant("other", "prod"), own):
                pass
        with (
            limiters.slot(SHOP, Limits()),
            limiters.slot(SHOP, Limits()),
            pytest.raises(ServiceUnavailable),
            limiters.slot(SHOP, Limits()),
        ):
            pass
        # Every slot given back: the full default is available again.
        with limiters.slot(SHOP, Limits()), limiters.slot(SHOP, Limits()):
            pass
        assert limiters.concurrency._active == {}
    finally:
        await limiters.close()


async def test_admit_counts_only_tenants_with_a_rate_limit() -> None:
    limiters = Limiters(None, max_concurrency=2)
    try:
        for _ in range(5):
            assert limiters.admit(SHOP, Limits(), CallerLimits(), USER, "203.0.113.7") is None
        assert limiters.rate._local == {}
        state = limiters.admit(
            SHOP, Limits(requests_per_minute=1), CallerLimits(), USER, "203.0.113.7"
        )
        assert state is not None and allowed(state)
        assert list(limiters.rate._local) == ["t:shop:prod"]
    finally:
        await limiters.close()


def _seen(state: RateState | None) -> list[tuple[str, int, int]]:
    assert state is not None and allowed(state)
    return [(r.name, r.quota, r.remaining) for r in results(state)]


async def test_a_callers_buckets_are_derived_once_and_again_for_other_limits() -> None:
    """What a caller's requests are checked against (bucket names, rates, header values) is
    derived on its first request and kept, until the release's or the project's limits are
    other objects: a new release, even with equal limits, or a changed project record. The
    buckets' counts carry over; another key has its own (`docs/decisions.md`, limits).
    6 a minute is one unit every 10 s: the counts hold however slowly the test runs."""
    limiters = Limiters(None, max_concurrency=2)
    release, project = CallerLimits(per_api_key=6), Limits()
    try:
        first = limiters.admit(SHOP, project, release, KEY, ADDRESS)
        second = limiters.admit(SHOP, project, release, KEY, ADDRESS)
        assert first is not None and second is not None
        assert second[0] is first[0] and len(limiters.buckets) == 1
        assert _seen(second) == [("key", 6, 4)]
        newer = limiters.admit(SHOP, project, CallerLimits(per_api_key=6), KEY, ADDRESS)
        assert newer is not None and newer[0] is not first[0]
        assert _seen(newer) == [("key", 6, 3)]
        raised = CallerLimits(per_api_key=60)  # one unit a second: 30 s of it spent
        assert _seen(limiters.admit(SHOP, project, raised, KEY, ADDRESS)) == [("key", 60, 29)]
        project = Limits(requests_per_minute=6)
        both = limiters.admit(SHOP, project, raised, KEY, ADDRESS)
        assert _seen(both) == [("tenant", 6, 5), ("key", 60, 28)]
        other = limiters.admit(SHOP, project, raised, Principal("api_key", "k2"), ADDRESS)
        assert _seen(other) == [("tenant", 6, 4), ("key", 60, 59)]
        assert len(limiters.buckets) == 2  # one entry per caller, replaced when derived again
    finally:
        await limiters.close()


async def test_the_settings_defaults_and_addresses_give_buckets_of_their_own() -> None:
    """A default from the settings applies unless the release sets its own (0: off) and only to
    the callers it names; per address, each address has its bucket, anonymous callers too."""
    limiters = Limiters(None, max_concurrency=2, defaults=CallerLimits(per_api_key=6))
    try:
        unset, off = CallerLimits(), CallerLimits(per_api_key=0)
        assert _seen(limiters.admit(SHOP, Limits(), unset, KEY, ADDRESS)) == [("key", 6, 5)]
        assert limiters.admit(SHOP, Limits(), off, KEY, ADDRESS) is None
        assert limiters.admit(SHOP, Limits(), unset, USER, ADDRESS) is None
        release = CallerLimits(per_address=6)
        for address, left in (("198.51.100.1", 5), ("198.51.100.1", 4), ("198.51.100.2", 5)):
            state = limiters.admit(SHOP, Limits(), release, ANONYMOUS, address)
            assert _seen(state) == [("address", 6, left)]
    finally:
        await limiters.close()


async def test_a_release_turning_the_default_address_limit_off_shares_the_key_bucket() -> None:
    """With the settings' per-address default on, a caller's buckets are kept per address even
    where the release turns it off (0): each address's entry holds the same key bucket, whose
    count they share, and no address bucket (`docs/decisions.md`, limits)."""
    limiters = Limiters(None, max_concurrency=2, defaults=CallerLimits(per_address=6))
    project, release = Limits(), CallerLimits(per_api_key=6, per_address=0)
    try:
        for address, left in (("198.51.100.1", 5), ("198.51.100.2", 4), ("198.51.100.1", 3)):
            state = limiters.admit(SHOP, project, release, KEY, address)
            assert _seen(state) == [("key", 6, left)]
        assert list(limiters.rate._local) == ["k:shop:prod:k1"] and len(limiters.buckets) == 2
    finally:
        await limiters.close()


async def test_in_process_buckets_are_pruned_when_a_caller_is_derived_never_while_counting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the bound, a derivation (not each request) drops the buckets that are full again
    and keeps every one still counting: a bucket forgotten mid-count would admit its caller
    anew (`docs/decisions.md`, limits)."""
    monkeypatch.setattr("tenancy.limits._LOCAL_MAX", 2)
    limiters = Limiters(None, max_concurrency=2)
    project, release = Limits(), CallerLimits(per_api_key=6)
    try:
        assert _seen(limiters.admit(SHOP, project, release, KEY, ADDRESS)) == [("key", 6, 5)]
        limiters.rate._local.update({"k:shop:prod:gone": 0.0, "k:shop:prod:old": 1.0})
        # A kept caller's request counts without pruning.
        assert _seen(limiters.admit(SHOP, project, release, KEY, ADDRESS)) == [("key", 6, 4)]
        assert len(limiters.rate._local) == 3
        other = Principal("api_key", "k2")
        assert _seen(limiters.admit(SHOP, project, release, other, ADDRESS)) == [("key", 6, 5)]
        assert sorted(limiters.rate._local) == ["k:shop:prod:k1", "k:shop:prod:k2"]
        assert _seen(limiters.admit(SHOP, project, release, KEY, ADDRESS)) == [("key", 6, 3)]
    finally:
        await limiters.close()


# --- password-hash bulkhead (issue 9 row 2; docs/security.md, passwords) ----------------------

FLOOD, QUIET = Tenant("flood", "prod"), Tenant("quiet", "prod")


class Gate:
    """Jobs that record their order and can be held on their thread until released."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def held(self, name: str) -> str:
        self.order.append(name)
        self.started.set()
        assert self.release.wait(10), "never released"
        return name

    def quick(self, name: str) -> str:
        self.order.append(name)
        return name


def _make_busy(pool: FairPool, tenant: Tenant) -> None:
    """Two of `tenant`'s jobs in the pool at once: busy for `BUSY_SECONDS` from now."""
    gate = Gate()
    first = pool.submit(tenant, gate.held, "busy-1")
    assert gate.started.wait(10)
    second = pool.submit(tenant, gate.quick, "busy-2")
    gate.release.set()
    assert (first.result(10), second.result(10)) == ("busy-1", "busy-2")


# One lane (no prompt threads, as where thread priorities cannot be set): the order alone.


def test_a_tenants_backlog_does_not_delay_another_tenants_job() -> None:
    """One thread, a flood's job running and three more queued: the quiet tenant's job, queued
    last, runs next (FIFO would run it last)."""
    pool, gate = FairPool(1, 0, per_tenant=2, name="test-hash"), Gate()
    try:
        first = pool.submit(FLOOD, gate.held, "flood-1")
        assert gate.started.wait(10)
        later = [pool.submit(FLOOD, gate.quick, f"flood-{i}") for i in (2, 3, 4)]
        quiet = pool.submit(QUIET, gate.quick, "quiet-1")
        gate.release.set()
        assert [f.result(10) for f in (first, *later, quiet)][-1] == "quiet-1"
    finally:
        pool.close()
    assert gate.order == ["flood-1", "quiet-1", "flood-2", "flood-3", "flood-4"]


def test_busy_tenants_are_served_one_job_each_per_round() -> None:
    """A flood's backlog against two tenants that queue their next job as soon as one ends:
    each gets one job per round, so neither side waits for the other's whole queue."""
    pool, gate = FairPool(1, 0, per_tenant=2, name="test-hash"), Gate()
    others = {Tenant(n, "prod"): n for n in ("b", "c")}

    def again(tenant: Tenant, round_: int) -> None:
        later = pool.submit(tenant, gate.quick, f"{others[tenant]}-{round_}")
        if round_ < 3:  # queued again from the worker, before it picks its next job
            later.add_done_callback(lambda _: again(tenant, round_ + 1))

    try:
        pool.submit(FLOOD, gate.held, "flood-1")
        assert gate.started.wait(10)
        last = [pool.submit(FLOOD, gate.quick, f"flood-{i}") for i in (2, 3, 4)][-1]
        for tenant in others:
            again(tenant, 1)
        gate.release.set()
        assert last.result(10) == "flood-4"
    finally:
        pool.close()
    # In each round the tenants with one job waiting go before the flood with its backlog.
    rounds = [["b-1", "c-1"], *([f"b-{r}", f"c-{r}", f"flood-{r}"] for r in (2, 3)), ["flood-4"]]
    assert gate.order == ["flood-1", *(name for names in rounds for name in names)]


@pytest.mark.parametrize(
    ("low", "prompt", "per_tenant"),
    [
        # Two threads, one per tenant: the flood's second job waits for its share.
        (2, 0, 1),
        # One thread per lane: the busy flood's jobs run on the low lane only (one lane, as
        # before, would make the quiet job wait for the flood's running one).
        (1, 1, 2),
    ],
    ids=["share-of-threads", "lanes"],
)
def test_a_quiet_tenants_job_starts_beside_a_flood_that_waits_for_a_thread(
    low: int, prompt: int, per_tenant: int
) -> None:
    """The flood's second job waits although a thread is free, and the quiet tenant's job takes
    that thread while the flood's first still runs."""
    pool, gate = FairPool(low, prompt, per_tenant=per_tenant, name="test-hash"), Gate()
    try:
        if prompt:
            _make_busy(pool, FLOOD)
        first = pool.submit(FLOOD, gate.held, "flood-1")
        assert gate.started.wait(10)
        second = pool.submit(FLOOD, gate.quick, "flood-2")
        assert pool.submit(QUIET, gate.quick, "quiet-1").result(10) == "quiet-1"
        assert not second.done()
        gate.release.set()
        assert (first.result(10), second.result(10)) == ("flood-1", "flood-2")
    finally:
        pool.close()
    assert gate.order == ["flood-1", "quiet-1", "flood-2"]


def test_closing_cancels_queued_jobs_and_tenants_are_forgotten() -> None:
    pool, gate = FairPool(1, 1, per_tenant=1, name="test-hash"), Gate()
    first = pool.submit(FLOOD, gate.held, "flood-1")
    assert gate.started.wait(10)
    queued = pool.submit(FLOOD, gate.quick, "flood-2")
    pool.close()
    gate.release.set()
    assert first.result(10) == "flood-1" and queued.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(QUIET, gate.quick, "quiet-2")


def test_a_busy_tenant_is_quiet_again_after_busy_seconds() -> None:
    """Past `BUSY_SECONDS` (on the pool's clock) a tenant that was busy may take the prompt lane
    again: its job runs while the low lane is held."""
    now = [0.0]
    pool, gate = FairPool(1, 1, per_tenant=2, name="test-hash", clock=lambda: now[0]), Gate()
    try:
        _make_busy(pool, FLOOD)
        _make_busy(pool, QUIET)
        flood = pool.submit(FLOOD, gate.held, "flood-1")  # busy: the low lane
        assert gate.started.wait(10)
        now[0] = FairPool.BUSY_SECONDS + 1
        assert pool.submit(QUIET, gate.quick, "quiet-1").result(10) == "quiet-1"
        gate.release.set()
        assert flood.result(10) == "flood-1"
    finally:
        pool.close()
    assert gate.order == ["flood-1", "quiet-1"]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")
async def test_hash_lanes_run_below_the_event_loop_and_one_thread_per_usable_cpu() -> None:
    """Prompt lane: nice 19 and `SCHED_BATCH`; low lane: `SCHED_IDLE`, which the event loop
    preempts as soon as it wakes. The event loop's own thread keeps its policy."""
    bulkhead = HashBulkhead()
    try:
        assert bulkhead.threads == len(os.sched_getaffinity(0))
        async with bulkhead.slot(SHOP):
            prompt = await bulkhead.compute(SHOP, threading.get_native_id)
        assert os.sched_getscheduler(prompt) == os.SCHED_BATCH
        assert os.getpriority(os.PRIO_PROCESS, prompt) == 19
        busy = Tenant("busy", "prod")
        gate = Gate()
        async with bulkhead.slot(busy), bulkhead.slot(busy):
            first = asyncio.ensure_future(bulkhead.compute(busy, gate.held, "first"))
            assert await asyncio.to_thread(gate.started.wait, 10)
            low = asyncio.ensure_future(bulkhead.compute(busy, threading.get_native_id))
            # Its first step submits the job: while `first` still runs, so the tenant is busy.
            # Without this turn the job was submitted only once `first` might have ended.
            await asyncio.sleep(0)
            gate.release.set()
            assert await first == "first"
            assert os.sched_getscheduler(await low) == os.SCHED_IDLE
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        bulkhead.close()


async def test_a_tenant_past_its_places_is_refused_at_once() -> None:
    bulkhead = HashBulkhead(1, per_tenant=1, queue=1)
    async with bulkhead.slot(SHOP), bulkhead.slot(SHOP):
        with pytest.raises(TooManyRequests) as refused:
            async with bulkhead.slot(SHOP):
                pass
        assert refused.value.retry_after == 1
        async with bulkhead.slot(Tenant("other", "prod")):  # another tenant has its own places
            pass
    async with bulkhead.slot(SHOP), bulkhead.slot(SHOP):  # every place given back
        pass
    assert bulkhead._holders == {}
