"""Strategy ordering: ordered, cheapest, fastest, available, weighted, and the override."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from switchboard.v1 import types_pb2

from server.config import Config, DeploymentConfig, PriceConfig, RouteConfig
from server.core.errors import ModelNotFoundError
from server.routing.router import Router
from server.store.embedded.health import LocalHealth
from tests.unit.resilience.scripted import Entry, ScriptedProvider, request

S = types_pb2


def build(
    strategy: str = "ordered",
    prices: dict[str, tuple[float, float]] | None = None,
    weights: dict[str, float] | None = None,
    rng: random.Random | None = None,
) -> tuple[Router, LocalHealth]:
    from server.routing.catalog import Catalog

    names = ["a", "b", "c"]
    prices = prices or {}
    weights = weights or {}
    cfg = Config(
        deployments=[
            DeploymentConfig(
                provider=n,
                model="m",
                price=PriceConfig(input=prices[n][0], output=prices[n][1]) if n in prices else None,
                weight=weights.get(n, 1.0),
            )
            for n in names
        ],
        routes=[RouteConfig(name="r", strategy=strategy, deployments=[f"{n}/m" for n in names])],  # type: ignore[arg-type]
    )
    health = LocalHealth(cfg.circuit)
    providers = {n: Entry(ScriptedProvider(n)) for n in names}
    return Router(Catalog(providers, cfg, prices={}), health=health, explore=0.0, rng=rng), health


def ids(router: Router, **fields: object) -> list[str]:
    stream = bool(fields.pop("stream", False))
    return [d.id for d in router.plan(request(**fields), stream=stream).candidates]


def test_ordered_keeps_configuration_order_without_copying() -> None:
    router, _ = build()
    plan = router.plan(request())
    assert [d.id for d in plan.candidates] == ["a/m", "b/m", "c/m"]
    assert plan.candidates is router.catalog.routes["r"].deployments
    assert plan.strategy == S.ROUTE_STRATEGY_ORDERED


def test_cheapest_orders_by_estimated_cost_of_this_request() -> None:
    # a: cheap input, dear output; b: the reverse; c: unpriced (last).
    router, _ = build("cheapest", prices={"a": (0.1, 10.0), "b": (5.0, 0.2)})
    long_prompt = "word " * 40_000  # ~50k tokens in, few out: input price dominates
    assert ids(router, text=long_prompt, max_tokens=10) == ["a/m", "b/m", "c/m"]
    # A short prompt with a big answer: output price dominates.
    assert ids(router, text="hi", max_tokens=4000) == ["b/m", "a/m", "c/m"]


def test_fastest_learns_from_measured_latency() -> None:
    router, health = build("fastest")
    # Unmeasured deployments go first so that each gets measured.
    health.record_success("a/m", latency=0.5, ttft=0.3)
    assert ids(router)[:2] == ["b/m", "c/m"]
    health.record_success("b/m", latency=0.2, ttft=0.4)
    health.record_success("c/m", latency=0.9, ttft=0.1)
    assert ids(router) == ["b/m", "a/m", "c/m"]  # non-streamed: total latency
    assert ids(router, stream=True) == ["c/m", "a/m", "b/m"]  # streamed: time to first token
    for _ in range(20):  # b slows down; the moving average follows
        health.record_success("b/m", latency=2.0, ttft=0.4)
    assert ids(router) == ["a/m", "c/m", "b/m"]


def test_fastest_explores_now_and_then() -> None:
    router, health = build("fastest", rng=random.Random(7))
    router.explore = 0.5
    for name, latency in (("a/m", 0.1), ("b/m", 0.2), ("c/m", 0.3)):
        health.record_success(name, latency=latency)
    firsts = Counter(ids(router)[0] for _ in range(400))
    assert firsts["a/m"] > 200 and firsts["b/m"] > 20 and firsts["c/m"] > 20


def test_available_avoids_open_circuits_and_failing_deployments() -> None:
    router, health = build("available")
    for _ in range(5):
        health.record_failure("a/m")  # opens (5 consecutive)
    health.record_success("b/m", latency=0.1)
    health.record_failure("b/m")
    for _ in range(3):
        health.record_success("c/m", latency=0.1)
    assert ids(router) == ["c/m", "b/m", "a/m"]


def test_available_treats_a_fully_cooling_key_pool_as_unavailable() -> None:
    router, health = build("available")
    health.cool("a/m#0", 30.0)
    assert ids(router)[-1] == "a/m"


def test_weighted_draws_the_first_candidate_by_weight() -> None:
    router, _ = build("weighted", weights={"a": 6.0, "b": 3.0, "c": 1.0}, rng=random.Random(1))
    firsts = Counter(ids(router)[0] for _ in range(3000))
    assert firsts["a/m"] / 3000 == pytest.approx(0.6, abs=0.04)
    assert firsts["b/m"] / 3000 == pytest.approx(0.3, abs=0.04)
    assert firsts["c/m"] / 3000 == pytest.approx(0.1, abs=0.03)
    assert all(sorted(ids(router)) == ["a/m", "b/m", "c/m"] for _ in range(20))


def test_request_override_picks_the_strategy() -> None:
    router, health = build("ordered")
    health.record_success("a/m", latency=0.9)
    health.record_success("b/m", latency=0.5)
    health.record_success("c/m", latency=0.1)
    req = request()
    req.routing.strategy = S.ROUTE_STRATEGY_FASTEST
    plan = router.plan(req)
    assert plan.strategy == S.ROUTE_STRATEGY_FASTEST
    assert [d.id for d in plan.candidates] == ["c/m", "b/m", "a/m"]


def test_provider_slash_model_addresses_one_deployment() -> None:
    router, _ = build("cheapest")
    plan = router.plan(request(model="b/other-model"))
    assert [(d.provider_name, d.model) for d in plan.candidates] == [("b", "other-model")]
    assert router.plan(request(model="b/m")).candidates[0] is router.catalog.deployments["b/m"]


def test_unknown_model_is_404() -> None:
    router, _ = build()
    with pytest.raises(ModelNotFoundError) as info:
        router.plan(request(model="nope"))
    assert info.value.http_status == 404 and info.value.param == "model"
