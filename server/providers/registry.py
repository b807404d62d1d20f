"""Builds the enabled providers from the environment and configured extra endpoints.

Convention (as LiteLLM and the vendors' own SDKs read them): ``<NAME>_API_KEY`` enables a known
provider, a comma-separated value gives a key pool, ``<NAME>_BASE_URL`` overrides its endpoint.
Extra endpoints come from configuration as ``ExtraEndpoint``: OpenAI-compatible servers (vLLM,
Ollama, a proxy) or further Anthropic / Gemini instances (another account, a compatible
gateway). ``demo`` is always enabled.

To add a provider: one entry in ``KNOWN_PROVIDERS``. To add an adapter kind: a branch in
``_construct``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.providers.anthropic import AnthropicProvider
from server.providers.anthropic.provider import DEFAULT_BASE_URL as ANTHROPIC_URL
from server.providers.base import Provider
from server.providers.demo import DemoProvider
from server.providers.gemini import GeminiProvider
from server.providers.gemini.provider import DEFAULT_BASE_URL as GEMINI_URL
from server.providers.openai_compat import OpenAICompatProvider

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class KnownProvider:
    """A provider enabled by ``<NAME>_API_KEY``: which adapter kind, which endpoint."""

    kind: str
    # None: the adapter's own default endpoint.
    base_url: str | None
    # OpenAI-compatible knobs (see OpenAICompatProvider).
    max_tokens_field: str = "max_tokens"
    send_reasoning: bool = False


KNOWN_PROVIDERS: dict[str, KnownProvider] = {
    # Reasoning models reject max_tokens (400 unsupported_parameter): OpenAI gets the new name.
    "openai": KnownProvider(
        "openai_compat", "https://api.openai.com/v1", max_tokens_field="max_completion_tokens"
    ),
    "groq": KnownProvider("openai_compat", "https://api.groq.com/openai/v1"),
    "mistral": KnownProvider("openai_compat", "https://api.mistral.ai/v1"),
    # Thinking mode requires reasoning_content back on tool-call turns.
    "deepseek": KnownProvider("openai_compat", "https://api.deepseek.com/v1", send_reasoning=True),
    "openrouter": KnownProvider("openai_compat", "https://openrouter.ai/api/v1"),
    "anthropic": KnownProvider("anthropic", None),
    "gemini": KnownProvider("gemini", None),
}
# The adapter kinds an ExtraEndpoint may name.
EXTRA_KINDS = frozenset({"openai_compat", "anthropic", "gemini"})


@dataclass(frozen=True, slots=True)
class ExtraEndpoint:
    """An extra upstream from configuration (mirrors LiteLLM ``api_base``).

    ``kind`` is the adapter (one of ``EXTRA_KINDS``); ``base_url`` is required for
    ``openai_compat`` and defaults to the vendor's endpoint for ``anthropic`` and ``gemini``.
    The key comes from ``api_key`` (comma-separated for a pool) or from the environment
    variable named by ``api_key_env``; neither is required for keyless local servers.
    ``max_tokens_field`` applies to ``openai_compat`` only.
    """

    name: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_tokens_field: str = "max_tokens"
    kind: str = "openai_compat"


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """An enabled provider and its key pool (keys never appear in repr)."""

    provider: Provider
    api_keys: tuple[str, ...] = field(default=(), repr=False)

    @property
    def name(self) -> str:
        """The provider's instance name."""
        return self.provider.name


def split_keys(raw: str | None) -> tuple[str, ...]:
    """A comma-separated key list, trimmed, empties dropped."""
    if not raw:
        return ()
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def build_providers(
    env: Mapping[str, str], extra: Sequence[ExtraEndpoint] = ()
) -> dict[str, ProviderEntry]:
    """Every enabled provider by name: known ones with a key in ``env``, ``extra``, and demo."""
    entries: dict[str, ProviderEntry] = {"demo": ProviderEntry(DemoProvider())}
    for name, known in KNOWN_PROVIDERS.items():
        prefix = name.upper()
        keys = split_keys(env.get(f"{prefix}_API_KEY"))
        if not keys:
            continue
        base_url = env.get(f"{prefix}_BASE_URL") or known.base_url
        entries[name] = ProviderEntry(_construct(name, known, base_url, {}), keys)
    for endpoint in extra:
        if not _NAME.match(endpoint.name):
            raise ValueError(
                f"provider name '{endpoint.name}' must be lowercase letters, digits, '-' or '_'"
            )
        if endpoint.name in entries:
            raise ValueError(f"provider '{endpoint.name}' is configured twice")
        if endpoint.kind not in EXTRA_KINDS:
            raise ValueError(
                f"provider '{endpoint.name}' has kind '{endpoint.kind}'; an extra provider is one "
                f"of {', '.join(sorted(EXTRA_KINDS))}"
            )
        keys = split_keys(endpoint.api_key)
        if endpoint.api_key_env:
            if endpoint.api_key_env not in env:
                raise ValueError(
                    f"provider '{endpoint.name}' reads its key from ${endpoint.api_key_env}, "
                    "which is not set"
                )
            keys += split_keys(env[endpoint.api_key_env])
        known = KnownProvider(
            endpoint.kind, endpoint.base_url, max_tokens_field=endpoint.max_tokens_field
        )
        provider = _construct(endpoint.name, known, endpoint.base_url, endpoint.headers)
        entries[endpoint.name] = ProviderEntry(provider, keys)
    return entries


def _construct(
    name: str, known: KnownProvider, base_url: str | None, headers: Mapping[str, str]
) -> Provider:
    if known.kind == "openai_compat":
        if base_url is None:
            raise ValueError(f"provider '{name}' needs a base URL")
        return OpenAICompatProvider(
            name,
            base_url,
            headers=headers,
            max_tokens_field=known.max_tokens_field,
            send_reasoning=known.send_reasoning,
        )
    if known.kind == "anthropic":
        return AnthropicProvider(name, base_url or ANTHROPIC_URL, default_headers=headers)
    if known.kind == "gemini":
        return GeminiProvider(name, base_url or GEMINI_URL, default_headers=headers)
    raise ValueError(f"provider '{name}' has unknown kind '{known.kind}'")
