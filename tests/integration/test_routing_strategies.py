"""Strategies over real upstreams: `cheapest` picks by price, `fastest` learns from measured
latency, `available` avoids the failing one; the per-request override picks the strategy."""

from __future__ import annotations

from collections import Counter

from switchboard.v1 import types_pb2

from server.config import RetryConfig
from tests.fakes.openai_upstream import Delay, FakeOpenAI, Status
from tests.integration.test_routing_harness import routed

ONE_TRY = RetryConfig(max_attempts_per_deployment=1)


async def test_cheapest_picks_by_price_for_this_requests_size() -> None:
    prices = {"dear": (10.0, 30.0), "in-cheap": (0.1, 20.0), "out-cheap": (2.0, 0.5)}
    async with (
        FakeOpenAI() as dear,
        FakeOpenAI() as in_cheap,
        FakeOpenAI() as out_cheap,
        routed(
            {"dear": dear, "in-cheap": in_cheap, "out-cheap": out_cheap},
            strategy="cheapest",
            prices=prices,
        ) as h,
    ):
        big_prompt = "lorem ipsum " * 20_000
        assert (await h.chat(text=big_prompt, max_tokens=5)).route.deployment == "in-cheap/m"
        assert (await h.chat(text="hi", max_tokens=8000)).route.deployment == "out-cheap/m"
        assert h.served()["dear"] == 0
        # Cost is billed at the serving deployment's price.
        response = await h.chat(text="hi", max_tokens=8000)
        usage = response.usage
        expected = (usage.input_tokens * 2.0 + usage.output_tokens * 0.5) / 1e6
        assert abs(response.cost.total_usd - expected) < 1e-12


async def test_fastest_learns_from_measured_latency() -> None:
    async with (
        FakeOpenAI(default=Delay(0.25)) as slow,
        FakeOpenAI(default=Delay(0.02)) as quick,
        routed({"slow": slow, "quick": quick}, strategy="fastest") as h,
    ):
        # First each unmeasured deployment gets tried (so it gets measured)...
        first = [(await h.chat()).route.deployment for _ in range(2)]
        assert first == ["slow/m", "quick/m"]
        # ...then the measured-faster one is preferred.
        later = Counter([(await h.chat()).route.deployment for _ in range(6)])
        assert later == {"quick/m": 6}
        # Streams rank by time to first token, also learned.
        frames = await h.stream()
        assert frames[-1].end.route.deployment == "quick/m"
        snap = h.health.snapshot("slow/m")
        assert snap.latency is not None and snap.latency > 0.2


async def test_available_avoids_the_failing_one() -> None:
    async with (
        FakeOpenAI() as flaky,
        FakeOpenAI() as steady,
        routed({"flaky": flaky, "steady": steady}, retry=ONE_TRY) as h,
    ):
        # Route order puts `flaky` first; it fails some requests (not enough to open).
        flaky.script(Status(500), None, Status(500), None)
        for _ in range(4):
            await h.chat()
        before = h.served()["flaky"]
        assert before == 4
        # With `available` (a per-request override) the failing one is ranked last.
        for _ in range(5):
            response = await h.chat(
                routing=types_pb2.RoutingOptions(strategy=types_pb2.ROUTE_STRATEGY_AVAILABLE)
            )
            assert response.route.deployment == "steady/m"
            assert response.route.strategy == types_pb2.ROUTE_STRATEGY_AVAILABLE
        assert h.served()["flaky"] == before
        # Without the override the configured order applies again.
        assert (await h.chat()).route.deployment == "flaky/m"
