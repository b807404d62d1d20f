"""Backoff with full jitter and Retry-After handling."""

from __future__ import annotations

from server.config import RetryConfig
from server.core.errors import UpstreamRateLimitedError, UpstreamServerError
from server.resilience.retry import RetryPolicy


def test_backoff_is_full_jitter_under_a_capped_exponential() -> None:
    cfg = RetryConfig(initial_delay=0.25, max_delay=2.0)
    top = RetryPolicy(cfg, rng=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in (1, 2, 3, 4, 5, 9)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert RetryPolicy(cfg, rng=lambda: 0.0).backoff(4) == 0.0
    half = RetryPolicy(cfg, rng=lambda: 0.5)
    assert half.backoff(3) == 0.5


def test_retry_after_is_used_when_it_is_short_enough() -> None:
    policy = RetryPolicy(RetryConfig(max_retry_after=10.0), rng=lambda: 0.5)
    short = UpstreamRateLimitedError("slow", retry_after=3.0)
    assert policy.delay(short, 1) == 3.0
    assert policy.delay(UpstreamServerError("503", retry_after=0.0), 1) == 0.0


def test_a_long_retry_after_means_move_on() -> None:
    policy = RetryPolicy(RetryConfig(max_retry_after=10.0))
    assert policy.delay(UpstreamRateLimitedError("slow", retry_after=10.5), 1) is None


def test_without_retry_after_the_backoff_applies() -> None:
    policy = RetryPolicy(RetryConfig(initial_delay=1.0, max_delay=8.0), rng=lambda: 0.5)
    assert policy.delay(UpstreamServerError("500"), 2) == 1.0
