"""The circuit breaker's states and counters (`tenancy/breaker.py`), on a clock the test moves."""

from __future__ import annotations

from tenancy.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    breaker = Breaker(threshold=3, open_seconds=10, clock=Clock())
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.allow()
    breaker.success()  # a success resets the streak
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and breaker.trips == 1 and breaker.failures == 5
    assert not breaker.allow() and not breaker.allow()
    assert breaker.rejections == 2


def test_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    clock = Clock()
    breaker = Breaker(threshold=1, open_seconds=10, clock=clock)
    breaker.failure()
    clock.now += 9.9
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow() and not breaker.allow()  # everyone else, while it runs
    assert breaker.state == "half_open"
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    assert breaker.trips == 1 and breaker.rejections == 3


def test_a_failed_probe_opens_again_for_a_full_period() -> None:
    clock = Clock()
    breaker = Breaker(threshold=2, open_seconds=5, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now += 5
    assert breaker.allow()
    clock.now += 3  # the probe took a while
    breaker.failure()
    assert breaker.state == "open" and breaker.trips == 2
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_a_late_failure_while_open_does_not_count_as_a_trip() -> None:
    clock = Clock()
    breaker = Breaker(threshold=1, open_seconds=5, clock=clock)
    assert breaker.allow() and breaker.allow()  # two calls in flight
    breaker.failure()
    breaker.failure()  # the second ends after the breaker opened
    assert breaker.state == "open" and breaker.trips == 1 and breaker.failures == 2
