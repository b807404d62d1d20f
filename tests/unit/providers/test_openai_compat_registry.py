"""Provider registry (server.providers.registry): env convention, extras, key pools, reprs."""

from __future__ import annotations

import pytest

from server.providers.anthropic import AnthropicProvider
from server.providers.demo import DemoProvider
from server.providers.gemini import GeminiProvider
from server.providers.openai_compat import OpenAICompatProvider
from server.providers.registry import KNOWN_PROVIDERS, ExtraEndpoint, build_providers


def test_demo_is_always_enabled() -> None:
    entries = build_providers({})
    assert list(entries) == ["demo"]
    assert isinstance(entries["demo"].provider, DemoProvider)
    assert entries["demo"].api_keys == ()


def test_api_key_enables_known_openai_compatible_providers_with_their_urls() -> None:
    env = {
        "OPENAI_API_KEY": "sk-one, sk-two,,",
        "GROQ_API_KEY": "gsk_x",
        "MISTRAL_API_KEY": "m",
        "DEEPSEEK_API_KEY": "d",
        "DEEPSEEK_BASE_URL": "http://127.0.0.1:9/v1/",
        "UNRELATED_API_KEY": "ignored",
    }
    entries = build_providers(env)
    assert set(entries) == {"demo", "openai", "groq", "mistral", "deepseek"}
    openai = entries["openai"]
    assert isinstance(openai.provider, OpenAICompatProvider)
    assert openai.api_keys == ("sk-one", "sk-two")
    assert openai.provider.base_url == "https://api.openai.com/v1"
    assert openai.provider.max_tokens_field == "max_completion_tokens"
    groq = entries["groq"].provider
    assert isinstance(groq, OpenAICompatProvider)
    assert groq.base_url == "https://api.groq.com/openai/v1"
    assert groq.max_tokens_field == "max_tokens"
    deepseek = entries["deepseek"].provider
    assert isinstance(deepseek, OpenAICompatProvider)
    assert deepseek.base_url == "http://127.0.0.1:9/v1"
    assert deepseek.send_reasoning
    assert entries["mistral"].name == "mistral"


def test_empty_key_does_not_enable() -> None:
    assert set(build_providers({"OPENAI_API_KEY": " , "})) == {"demo"}


def test_keys_never_appear_in_repr() -> None:
    entries = build_providers(
        {"OPENAI_API_KEY": "sk-very-secret-1"},
        [
            ExtraEndpoint(
                "local",
                "http://127.0.0.1:8000/v1",
                api_key="sk-very-secret-2",
                headers={"x-api-key": "sk-very-secret-3"},
            )
        ],
    )
    shown = repr(entries) + str(entries)
    assert "sk-very-secret" not in shown


def test_extra_endpoints() -> None:
    entries = build_providers(
        {"VLLM_KEY": "k1,k2"},
        [
            ExtraEndpoint("vllm", "http://127.0.0.1:8000/v1", api_key_env="VLLM_KEY"),
            ExtraEndpoint("ollama", "http://127.0.0.1:11434/v1"),
        ],
    )
    assert entries["vllm"].api_keys == ("k1", "k2")
    assert entries["ollama"].api_keys == ()
    assert entries["ollama"].provider.kind == "openai_compat"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (ExtraEndpoint("Bad/Name", "http://x"), "must be lowercase"),
        (ExtraEndpoint("demo", "http://x"), "configured twice"),
        (ExtraEndpoint("x", "http://x", api_key_env="MISSING_KEY"), "MISSING_KEY"),
    ],
)
def test_extra_endpoint_errors(extra: ExtraEndpoint, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_providers({}, [extra])


def test_anthropic_and_gemini_are_known_kinds() -> None:
    assert KNOWN_PROVIDERS["anthropic"].kind == "anthropic"
    assert KNOWN_PROVIDERS["gemini"].kind == "gemini"
    entries = build_providers(
        {"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g", "GEMINI_BASE_URL": "http://127.0.0.1:9"}
    )
    anthropic = entries["anthropic"].provider
    assert isinstance(anthropic, AnthropicProvider)
    assert anthropic.url == "https://api.anthropic.com/v1/messages"
    assert entries["anthropic"].api_keys == ("a",)
    gemini = entries["gemini"].provider
    assert isinstance(gemini, GeminiProvider)
    assert gemini.url("m", stream=False) == "http://127.0.0.1:9/v1beta/models/m:generateContent"
    assert entries["gemini"].api_keys == ("g",)


def test_extra_anthropic_and_gemini_endpoints() -> None:
    entries = build_providers(
        {"TEAM_KEY": "sk-ant-team"},
        [
            ExtraEndpoint("claude-team", kind="anthropic", api_key_env="TEAM_KEY"),
            ExtraEndpoint(
                "claude-proxy",
                "http://127.0.0.1:9/v1",
                kind="anthropic",
                headers={"Anthropic-Beta": "x"},
            ),
            ExtraEndpoint("gemini-eu", "http://127.0.0.1:8", kind="gemini"),
        ],
    )
    team = entries["claude-team"].provider
    assert isinstance(team, AnthropicProvider) and team.name == "claude-team"
    assert team.url == "https://api.anthropic.com/v1/messages"
    assert entries["claude-team"].api_keys == ("sk-ant-team",)
    proxy = entries["claude-proxy"].provider
    assert isinstance(proxy, AnthropicProvider)
    assert proxy.url == "http://127.0.0.1:9/v1/messages"
    assert proxy._headers["anthropic-beta"] == "x"
    gemini = entries["gemini-eu"].provider
    assert isinstance(gemini, GeminiProvider) and gemini.kind == "gemini"
    assert gemini.url("m", stream=True).startswith("http://127.0.0.1:8/v1beta/models/m:")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (ExtraEndpoint("x", "http://x", kind="demo"), "an extra provider is one of"),
        (ExtraEndpoint("x"), "needs a base URL"),
    ],
)
def test_extra_endpoint_kind_errors(extra: ExtraEndpoint, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_providers({}, [extra])
