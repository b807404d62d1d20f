"""The catalog's deployments and prices, the default price table, and cost arithmetic."""

from __future__ import annotations

import pytest
from switchboard.v1 import types_pb2

from server.config import Config, DeploymentConfig, PriceConfig, RouteConfig
from server.routing import catalog as catalog_module
from server.routing.catalog import Catalog
from server.routing.cost import (
    Price,
    compute_cost,
    estimate_cost,
    estimate_input_tokens,
    output_estimate,
)
from server.routing.price_table import (
    DEFAULT_PRICES,
    EMBEDDING_MODELS,
    PRICES_AS_OF,
    lookup_price,
)
from tests.unit.resilience.scripted import Entry, ScriptedProvider, request


def providers(*names: str, keys: tuple[str, ...] = ("sk-1",)) -> dict[str, Entry]:
    return {n: Entry(ScriptedProvider(n), keys) for n in names}


def test_default_table_is_dated_and_sane() -> None:
    assert PRICES_AS_OF == "2026-11-25"
    providers_listed = {key.split("/")[0] for key in DEFAULT_PRICES}
    assert {"openai", "anthropic", "gemini", "groq", "mistral", "deepseek"} <= providers_listed
    assert "openai/text-embedding-3-small" in EMBEDDING_MODELS
    for key, price in DEFAULT_PRICES.items():
        if key in EMBEDDING_MODELS:
            assert price.input > 0 and "embed" in key, key
            continue
        assert price.input > 0 and price.output >= price.input * 0.5, key
        if price.cached_input is not None:
            assert price.cached_input < price.input, key
        if price.cache_write is not None:
            assert price.cache_write > price.input, key  # Anthropic bills writes at a premium


def test_deployments_get_the_default_price_and_config_overrides_it() -> None:
    cfg = Config(
        deployments=[
            DeploymentConfig(provider="openai", model="gpt-4o-mini"),
            DeploymentConfig(
                provider="anthropic",
                model="claude-haiku-4-5",
                price=PriceConfig(input=9, output=99, cached_input=1),
            ),
        ]
    )
    cat = Catalog(providers("openai", "anthropic"), cfg)
    assert cat.deployments["openai/gpt-4o-mini"].price == DEFAULT_PRICES["openai/gpt-4o-mini"]
    assert cat.deployments["anthropic/claude-haiku-4-5"].price == Price(9, 99, 1, None)


def test_dated_snapshots_use_their_models_price() -> None:
    table = {"openai/gpt-4o-mini": Price(1, 2), "anthropic/claude-sonnet-4-5": Price(3, 4)}
    assert lookup_price(table, "openai/gpt-4o-mini-2024-07-18") == Price(1, 2)
    assert lookup_price(table, "anthropic/claude-sonnet-4-5-20250929") == Price(3, 4)
    assert lookup_price(table, "openai/gpt-4o-mini-high") is None


def test_routes_keep_order_and_skip_disabled_providers() -> None:
    cfg = Config(
        deployments=[
            DeploymentConfig(provider="a", model="m"),
            DeploymentConfig(provider="off", model="m"),
            DeploymentConfig(id="fast-b", provider="b", model="m2"),
        ],
        routes=[RouteConfig(name="r", deployments=["fast-b", "off/m", "a/m"])],
    )
    cat = Catalog(providers("a", "b"), cfg, prices={})
    route = cat.resolve("r")
    assert route.is_alias and [d.id for d in route.deployments] == ["fast-b", "a/m"]
    assert cat.resolve("fast-b").deployments[0].model == "m2"
    assert cat.resolve("fast-b") is cat.resolve("fast-b")  # built once, not per request


def test_key_pool_names_never_contain_keys() -> None:
    cfg = Config(deployments=[DeploymentConfig(provider="a", model="m")])
    cat = Catalog(providers("a", keys=("sk-secret-1", "sk-secret-2")), cfg, prices={})
    d = cat.deployments["a/m"]
    assert d.key_names == ("a/m#0", "a/m#1")
    assert "sk-secret" not in repr(d)


def test_direct_names_are_remembered_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "MAX_DIRECT_DEPLOYMENTS", 3)
    cat = Catalog(providers("a"), Config(), prices={})
    for i in range(10):
        assert cat.resolve(f"a/model-{i}").deployments[0].model == f"model-{i}"
    assert len(cat.deployments) == 3


def test_cost_bills_cache_reads_writes_and_the_rest_separately() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = types_pb2.Usage(
        input_tokens=1_000_000,
        cached_input_tokens=200_000,
        cache_write_input_tokens=100_000,
        output_tokens=10_000,
    )
    cost = compute_cost(usage, price)
    assert cost.input_usd == pytest.approx(2.1)
    assert cost.cached_input_usd == pytest.approx(0.06)
    assert cost.cache_write_usd == pytest.approx(0.375)
    assert cost.output_usd == pytest.approx(0.15)
    assert cost.total_usd == pytest.approx(2.685)
    # Providers without cache pricing bill cached tokens at the input rate.
    assert compute_cost(usage, Price(1.0, 1.0)).total_usd == pytest.approx(1.01)
    assert compute_cost(usage, None).total_usd == 0.0


def test_input_estimate_is_chars_over_four() -> None:
    req = request(text="x" * 4000)
    assert 1000 <= estimate_input_tokens(req) <= 1010
    assert output_estimate(request(max_tokens=77)) == 77
    assert output_estimate(request()) == 512
    assert estimate_cost(Price(2.0, 10.0), 1000, 100) == pytest.approx(0.003)
    assert estimate_cost(None, 1, 1) is None


def test_listing_has_routes_configured_priced_and_declared_models_only() -> None:
    cfg = Config(
        deployments=[DeploymentConfig(provider="a", model="m")],
        routes=[RouteConfig(name="r", deployments=["a/m"], description="the route")],
    )
    entries = providers("a", "b")
    entries["b"].provider.models = ("echo",)  # type: ignore[attr-defined]
    cat = Catalog(entries, cfg, prices={"a/priced": Price(1.0, 2.0)})
    cat.resolve("a/some-name-a-caller-made-up")
    listed = {m.id: m for m in cat.list_models()}
    assert list(listed) == ["r", "a/m", "a/priced", "b/echo"]
    assert listed["r"].route and listed["r"].description == "the route"
    assert listed["a/priced"].pricing.output_per_mtok == 2.0
    assert listed["a/priced"].pricing.cached_input_per_mtok == 1.0  # no discount: input rate
