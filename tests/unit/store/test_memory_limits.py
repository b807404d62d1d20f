"""RPM/TPM token buckets: admission, retry_after, reservation and reconciliation, on a fake
clock (the minute window is the production one unless a test shortens it)."""

from __future__ import annotations

import pytest

from server.core.errors import RateLimitedError
from server.store.embedded.limits import MemoryRateLimiter as RateLimiter
from tests.unit.policy.support import Clock


def limiter(clock: Clock, window: float = 60.0) -> RateLimiter:
    return RateLimiter(window=window, clock=clock)


async def refused(
    rl: RateLimiter, key: str, rpm: int | None, tpm: int | None, tokens: int
) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as info:
        await rl.acquire(key, rpm, tpm, tokens)
    return info.value


async def test_rpm_bursts_to_the_limit_then_refills_at_limit_per_minute() -> None:
    clock = Clock()
    rl = limiter(clock)
    for _ in range(3):
        assert await rl.acquire("k", 3, None, 0) == 0
    err = await refused(rl, "k", 3, None, 0)
    # 3 per minute refill one request every 20 s; the bucket is empty now.
    assert err.retry_after == pytest.approx(20.0)
    assert err.http_status == 429 and err.reason == "RATE_LIMITED"
    assert [(v.subject, v.description) for v in err.quota_violations] == [
        ("key:k", "requests_per_minute limit of 3 reached")
    ]
    assert "3 requests per minute" in err.message
    clock.advance(19.5)
    assert (await refused(rl, "k", 3, None, 0)).retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    await rl.acquire("k", 3, None, 0)
    # A refusal takes nothing: exactly one more request after the next 20 s.
    await refused(rl, "k", 3, None, 0)
    clock.advance(20.0)
    await rl.acquire("k", 3, None, 0)
    await refused(rl, "k", 3, None, 0)


async def test_the_window_is_injectable_and_keys_are_independent() -> None:
    clock = Clock()
    rl = limiter(clock, window=1.0)
    await rl.acquire("a", 2, None, 0)
    await rl.acquire("a", 2, None, 0)
    assert (await refused(rl, "a", 2, None, 0)).retry_after == pytest.approx(0.5)
    await rl.acquire("b", 2, None, 0)
    clock.advance(1.0)
    # Refill stops at the capacity: a long idle time does not bank more than one window.
    clock.advance(100.0)
    await rl.acquire("a", 2, None, 0)
    await rl.acquire("a", 2, None, 0)
    await refused(rl, "a", 2, None, 0)


async def test_tpm_reserves_the_estimate_and_reconciles_to_actual_usage() -> None:
    clock = Clock()
    rl = limiter(clock)
    assert await rl.acquire("k", None, 100, 60) == 60
    err = await refused(rl, "k", None, 100, 50)
    # 40 left, 50 needed, 100/60 tokens per second: 6 s.
    assert err.retry_after == pytest.approx(6.0)
    assert err.quota_violations[0].description == (
        "tokens_per_minute limit of 100 reached (this request reserves 50 tokens)"
    )
    # The first request used only 10 tokens: 50 come back.
    rl.reconcile("k", 60, 10)
    assert rl.available("k") == pytest.approx(90.0)
    assert await rl.acquire("k", None, 100, 50) == 50
    assert rl.available("k") == pytest.approx(40.0)


async def test_usage_beyond_the_reservation_is_a_debt_that_delays_the_key() -> None:
    clock = Clock()
    rl = limiter(clock)
    await rl.acquire("k", None, 100, 10)
    rl.reconcile("k", 10, 150)
    assert rl.available("k") == pytest.approx(-50.0)
    assert (await refused(rl, "k", None, 100, 1)).retry_after == pytest.approx(51 * 60 / 100)
    # A refund never fills the bucket beyond its capacity.
    clock.advance(90.0)
    assert rl.available("k") == pytest.approx(100.0)
    await rl.acquire("k", None, 100, 40)
    clock.advance(30.0)
    rl.reconcile("k", 40, 0)
    assert rl.available("k") == pytest.approx(100.0)


async def test_a_request_larger_than_the_limit_waits_for_a_full_bucket() -> None:
    clock = Clock()
    rl = limiter(clock)
    # Estimated 500 tokens against 100 per minute: admitted when full, reserving the capacity.
    assert await rl.acquire("k", None, 100, 500) == 100
    assert (await refused(rl, "k", None, 100, 500)).retry_after == pytest.approx(60.0)
    clock.advance(30.0)
    assert (await refused(rl, "k", None, 100, 500)).retry_after == pytest.approx(30.0)


async def test_both_limits_are_checked_before_anything_is_taken() -> None:
    clock = Clock()
    rl = limiter(clock)
    await rl.acquire("k", 2, 100, 90)
    # TPM refuses: the request is not counted against RPM either.
    err = await refused(rl, "k", 2, 100, 50)
    assert len(err.quota_violations) == 1
    assert rl.available("k", "rpm") == pytest.approx(1.0)
    await rl.acquire("k", 2, 100, 5)
    # Both exhausted: both named, and the wait is the longer one (RPM: 30 s; TPM: 3 s).
    err = await refused(rl, "k", 2, 100, 10)
    assert [v.description.split()[0] for v in err.quota_violations] == [
        "requests_per_minute",
        "tokens_per_minute",
    ]
    assert err.retry_after == pytest.approx(30.0)


async def test_a_changed_limit_keeps_what_was_used() -> None:
    clock = Clock()
    rl = limiter(clock)
    await rl.acquire("k", 2, None, 0)
    await rl.acquire("k", 2, None, 0)
    await refused(rl, "k", 2, None, 0)
    # Raised to 4 per minute: 2 used, 2 left.
    await rl.acquire("k", 4, None, 0)
    await rl.acquire("k", 4, None, 0)
    assert (await refused(rl, "k", 4, None, 0)).retry_after == pytest.approx(15.0)
