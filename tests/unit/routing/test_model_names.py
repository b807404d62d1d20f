"""What a model name resolves to: routes, aliases, `provider/model`, bare names (catalog)."""

from __future__ import annotations

import pytest

from server.checks import disabled_providers, provider_problems
from server.config import Config, DeploymentConfig, RouteConfig
from server.core.errors import ModelNotFoundError
from server.routing.catalog import Catalog
from server.routing.cost import Price
from tests.unit.resilience.scripted import Entry, ScriptedProvider

PRICES = {
    "openai/gpt-4o-mini": Price(0.15, 0.6),
    "openai/gpt-4o": Price(2.5, 10.0),
    "groq/gpt-4o": Price(1.0, 1.0),
    "anthropic/claude-haiku-4-5": Price(1.0, 5.0),
}
DISABLED = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}


def catalog(config: Config | None = None, names: tuple[str, ...] = ("openai", "groq")) -> Catalog:
    entries = {n: Entry(ScriptedProvider(n), ("sk-1",)) for n in names}
    return Catalog(entries, config or Config(), prices=PRICES, disabled=DISABLED)


def not_found(cat: Catalog, model: str) -> ModelNotFoundError:
    with pytest.raises(ModelNotFoundError) as info:
        cat.resolve(model)
    assert info.value.http_status == 404 and info.value.param == "model"
    return info.value


def test_a_bare_name_served_by_one_enabled_provider_resolves_to_it() -> None:
    cat = catalog()
    route = cat.resolve("gpt-4o-mini")
    assert [d.id for d in route.deployments] == ["openai/gpt-4o-mini"]
    assert route.name == "gpt-4o-mini"
    # The same deployment object as the direct name, so health and prices are shared.
    assert route.deployments[0] is cat.resolve("openai/gpt-4o-mini").deployments[0]
    assert cat.resolve("gpt-4o-mini") is route  # remembered


def test_an_ambiguous_bare_name_lists_the_candidates() -> None:
    error = not_found(catalog(), "gpt-4o")
    assert "`openai/gpt-4o`" in error.message and "`groq/gpt-4o`" in error.message
    assert error.metadata["candidates"] == "openai/gpt-4o,groq/gpt-4o"


def test_a_configured_deployment_makes_its_model_a_bare_name() -> None:
    config = Config(deployments=[DeploymentConfig(provider="groq", model="llama-3.1-8b-instant")])
    route = catalog(config).resolve("llama-3.1-8b-instant")
    assert [d.id for d in route.deployments] == ["groq/llama-3.1-8b-instant"]


def test_an_alias_beats_bare_name_resolution_and_may_name_a_route() -> None:
    config = Config(
        models={"gpt-4o": "groq/gpt-4o", "fast": "chat"},
        routes=[RouteConfig(name="chat", deployments=["openai/gpt-4o-mini", "groq/gpt-4o"])],
    )
    cat = catalog(config)
    assert [d.id for d in cat.resolve("gpt-4o").deployments] == ["groq/gpt-4o"]
    fast = cat.resolve("fast")
    assert [d.id for d in fast.deployments] == ["openai/gpt-4o-mini", "groq/gpt-4o"]
    listed = {m.id: m for m in cat.list_models()}
    assert listed["gpt-4o"].description == "alias of groq/gpt-4o"


def test_a_model_of_a_provider_that_is_not_enabled_says_which_variable_enables_it() -> None:
    cat = catalog()
    direct = not_found(cat, "anthropic/claude-haiku-4-5")
    assert "not enabled" in direct.message and "ANTHROPIC_API_KEY" in direct.message
    assert direct.metadata == {"provider": "anthropic", "enable_with": "ANTHROPIC_API_KEY"}
    # Unpriced models of a disabled provider too: the provider decides.
    assert "GEMINI_API_KEY" in not_found(cat, "gemini/gemini-9").message
    bare = not_found(cat, "claude-haiku-4-5")
    assert "`anthropic/claude-haiku-4-5`" in bare.message and "ANTHROPIC_API_KEY" in bare.message


def test_unknown_names_are_a_404_naming_the_enabled_providers() -> None:
    error = not_found(catalog(), "no-such-model")
    assert "does not exist" in error.message and "groq, openai" in error.message
    # A slash that is not a provider's is part of a bare name, not a provider prefix.
    assert "does not exist" in not_found(catalog(), "meta-llama/llama-3").message


def test_disabled_providers_name_their_variables() -> None:
    config = Config.model_validate(
        {
            "providers": [
                {"name": "openai", "api_key_env": "MY_OPENAI"},
                {"name": "local", "base_url": "http://x/v1"},
            ]
        }
    )
    off = disabled_providers(config, {"GROQ_API_KEY": "k"})
    assert off["openai"] == "MY_OPENAI" and off["anthropic"] == "ANTHROPIC_API_KEY"
    assert "groq" not in off and "local" not in off and "demo" not in off


def test_check_config_reports_aliases() -> None:
    config = Config(
        models={"mini": "openai/gpt-4o-mini", "bad": "nowhere/x", "odd": "plain"},
        routes=[RouteConfig(name="chat", deployments=["openai/gpt-4o-mini"])],
    )
    problems = provider_problems(config, {})
    assert any("models.mini" in w and "OPENAI_API_KEY" in w for w in problems.warnings)
    assert any("models.bad" in e and "unknown provider" in e for e in problems.errors)
    assert any("models.odd" in e for e in problems.errors)
