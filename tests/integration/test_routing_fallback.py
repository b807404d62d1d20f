"""Fallback and retries through real adapters and loopback fake upstreams: 500, 429 with short
and long Retry-After, Anthropic 529, timeouts, non-retryable errors, key pools."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from server.config import RetryConfig, TimeoutConfig
from server.core.errors import (
    AllAttemptsFailedError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
)
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import Delay, FakeOpenAI, Status
from tests.integration.test_routing_harness import attempts, routed

ONE_TRY = RetryConfig(max_attempts_per_deployment=1, max_retry_after=1.0)


async def test_500_falls_back_to_the_healthy_upstream() -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(Status(500), Status(502))
        response = await h.chat()
        assert response.route.deployment == "b/m"
        assert attempts(response.route) == [
            ("a/m", "SERVER_ERROR"),
            ("a/m", "SERVER_ERROR"),
            ("b/m", "SUCCESS"),
        ]
        assert [x.http_status for x in response.route.attempts] == [500, 502, 200]
        assert h.served() == {"a": 2, "b": 1}


async def test_short_retry_after_is_honoured() -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(Status(429, headers={"retry-after-ms": "300"}))
        started = time.monotonic()
        response = await h.chat()
        elapsed = time.monotonic() - started
        assert response.route.deployment == "a/m"
        assert attempts(response.route) == [("a/m", "RATE_LIMITED"), ("a/m", "SUCCESS")]
        assert elapsed >= 0.29
        assert h.served() == {"a": 2, "b": 0}


async def test_long_retry_after_moves_on_at_once() -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(Status(429, headers={"retry-after": "30"}))
        started = time.monotonic()
        response = await h.chat()
        assert time.monotonic() - started < 0.5
        assert response.route.deployment == "b/m"
        assert h.served() == {"a": 1, "b": 1}
        # While its key cools down `a` is skipped without a call.
        again = await h.chat()
        assert attempts(again.route) == [("a/m", "RATE_LIMITED"), ("b/m", "SUCCESS")]
        assert h.served() == {"a": 1, "b": 2}


async def test_all_rate_limited_answers_429_with_the_smallest_delay() -> None:
    in_40s = email.utils.formatdate(time.time() + 40, usegmt=True)
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(Status(429, headers={"retry-after": "25"}))
        b.script(Status(429, headers={"retry-after": in_40s}))
        with pytest.raises(AllAttemptsFailedError) as info:
            await h.chat()
    err = info.value
    assert err.http_status == 429 and err.reason == "UPSTREAM_RATE_LIMITED"
    assert err.retry_after == 25.0
    assert len(err.attempts) == 2


async def test_anthropic_529_is_retried_then_falls_back() -> None:
    async with (
        FakeAnthropic() as a,
        FakeOpenAI() as b,
        routed({"claude": a, "b": b}) as h,
    ):
        a.script(Status(529), Status(529))
        response = await h.chat()
        assert attempts(response.route) == [
            ("claude/m", "SERVER_ERROR"),
            ("claude/m", "SERVER_ERROR"),
            ("b/m", "SUCCESS"),
        ]
        assert [x.http_status for x in response.route.attempts] == [529, 529, 200]
        # The next one goes through Anthropic again.
        response = await h.chat()
        assert response.route.deployment == "claude/m"


async def test_a_slow_upstream_times_out_and_its_request_is_cancelled() -> None:
    timeouts = TimeoutConfig(attempt=0.3, stream_idle=5.0)
    async with (
        FakeOpenAI() as a,
        FakeOpenAI() as b,
        routed({"a": a, "b": b}, retry=ONE_TRY, timeouts=timeouts) as h,
    ):
        a.script(Delay(3.0))
        started = time.monotonic()
        response = await h.chat()
        assert time.monotonic() - started < 1.0
        assert attempts(response.route) == [("a/m", "TIMEOUT"), ("b/m", "SUCCESS")]
        for _ in range(50):  # the fake's handler sees the disconnect shortly after
            if a.cancelled:
                break
            await asyncio.sleep(0.02)
        assert a.cancelled == 1


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_non_retryable_upstream_errors_do_not_fall_back(status: int) -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(Status(status, message="nope"))
        with pytest.raises(Exception) as info:
            await h.chat()
        assert getattr(info.value, "status", None) == status
        assert h.served() == {"a": 1, "b": 0}
        if status == 400:
            assert isinstance(info.value, UpstreamBadRequestError)


async def test_a_429_cools_only_that_key_of_the_pool() -> None:
    async with (
        FakeOpenAI() as a,
        routed({"a": a}, keys=("sk-one", "sk-two")) as h,
    ):
        a.script(Status(429, headers={"retry-after": "30"}))
        response = await h.chat()
        assert attempts(response.route) == [("a/m", "RATE_LIMITED"), ("a/m", "SUCCESS")]
        for _ in range(3):
            await h.chat()
        used = [r.headers["authorization"] for r in a.requests]
    assert used == [
        "Bearer sk-one",
        "Bearer sk-two",
        "Bearer sk-two",
        "Bearer sk-two",
        "Bearer sk-two",
    ]


async def test_one_rate_limited_key_alone_gives_the_client_429() -> None:
    async with FakeOpenAI() as a, routed({"a": a}) as h:
        a.script(Status(429, headers={"retry-after": "20"}))
        with pytest.raises(UpstreamRateLimitedError) as info:
            await h.chat()
        assert info.value.http_status == 429 and info.value.retry_after == 20.0
        with pytest.raises(UpstreamRateLimitedError) as again:
            await h.chat()  # skipped without a call while the key cools down
        assert again.value.retry_after is not None and 15 < again.value.retry_after <= 20
        assert h.served() == {"a": 1}
