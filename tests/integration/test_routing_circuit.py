"""Circuit breaker, deadlines and client cancellation over real HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.config import CircuitConfig, RetryConfig
from server.core.errors import DeadlineExceededError, UpstreamServerError
from tests.fakes.openai_upstream import Delay, FakeOpenAI, Stall, Status
from tests.integration.test_routing_harness import Harness, attempts, routed

ONE_TRY = RetryConfig(max_attempts_per_deployment=1)


def circuit_state(h: Harness, name: str) -> float:
    body, _ = h.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "switchboard_circuit_state" and sample.labels["name"] == name:
                return sample.value
    return 0.0


async def test_circuit_opens_skips_and_recovers_through_a_half_open_probe() -> None:
    circuit = CircuitConfig(consecutive_failures=3, cooldown_seconds=0.4)
    async with (
        FakeOpenAI() as a,
        FakeOpenAI() as b,
        routed({"a": a, "b": b}, retry=ONE_TRY, circuit=circuit) as h,
    ):
        a.script(Status(500), Status(503), Status(500))
        for _ in range(3):
            assert (await h.chat()).route.deployment == "b/m"
        assert circuit_state(h, "a/m") == 2  # open
        # Open: skipped without a request reaching `a`.
        for _ in range(3):
            response = await h.chat()
            assert attempts(response.route) == [("a/m", "CIRCUIT_OPEN"), ("b/m", "SUCCESS")]
        assert h.served()["a"] == 3
        await asyncio.sleep(0.45)
        # Half-open: exactly one probe; `a` answers, so the circuit closes.
        a.script(Delay(0.2))
        probe, other = await asyncio.gather(h.chat(), h.chat())
        assert probe.route.deployment == "a/m"
        assert attempts(other.route) == [("a/m", "CIRCUIT_OPEN"), ("b/m", "SUCCESS")]
        assert h.served()["a"] == 4
        assert circuit_state(h, "a/m") == 0
        assert (await h.chat()).route.deployment == "a/m"


async def test_a_single_deployment_with_an_open_circuit_fails_fast() -> None:
    circuit = CircuitConfig(consecutive_failures=2, cooldown_seconds=30)
    async with FakeOpenAI() as a, routed({"a": a}, retry=ONE_TRY, circuit=circuit) as h:
        a.script(Status(500), Status(500))
        for _ in range(2):
            with pytest.raises(UpstreamServerError):
                await h.chat()
        started = time.monotonic()
        with pytest.raises(Exception, match="circuit open") as info:
            await h.chat()
        assert time.monotonic() - started < 0.05
        assert info.value.http_status == 503  # type: ignore[attr-defined]
        assert 25 < info.value.retry_after <= 30  # type: ignore[attr-defined]
        assert h.served() == {"a": 2}


async def test_the_deadline_bounds_the_whole_request_including_retries() -> None:
    retry = RetryConfig(max_attempts_per_deployment=5, initial_delay=0.05, max_delay=0.1)
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}, retry=retry) as h:
        a.default = Status(500)
        b.script(Stall())
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as info:
            await h.chat(within=0.6)
        elapsed = time.monotonic() - started
        assert 0.55 < elapsed < 1.0
        assert info.value.http_status == 504
        assert "attempt" in info.value.message
        for _ in range(50):
            if b.cancelled:
                break
            await asyncio.sleep(0.02)
        assert b.cancelled == 1  # the stalled upstream call was abandoned, not left running


async def test_client_cancel_reaches_the_upstream() -> None:
    async with FakeOpenAI() as a, routed({"a": a}) as h:
        a.script(Stall())
        task = asyncio.create_task(h.chat())
        await a.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            if a.cancelled:
                break
            await asyncio.sleep(0.02)
        assert a.cancelled == 1
        assert h.health.snapshot("a/m").error_score == 0.0
