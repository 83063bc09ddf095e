"""The typed project `limits` (`docs/admin.md`) and the concurrency slot (`docs/tenancy.md` I7):
parsed and checked in one place, unset limits falling back to the process-wide setting."""

from __future__ import annotations

import pytest

from tenancy.errors import BadRequest, ServiceUnavailable
from tenancy.limits import CallerLimits, Limiters, Limits
from tenancy.principal import Principal, Tenant

SHOP = Tenant("shop", "prod")
USER = Principal("user", "u1")


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
            assert await limiters.admit(SHOP, Limits(), CallerLimits(), USER, "203.0.113.7") is None
        assert limiters.rate._local == {}
        state = await limiters.admit(
            SHOP, Limits(requests_per_minute=1), CallerLimits(), USER, "203.0.113.7"
        )
        assert state is not None and state.allowed
        assert list(limiters.rate._local) == ["t:shop:prod"]
    finally:
        await limiters.close()
