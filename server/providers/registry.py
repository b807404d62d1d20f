"""Builds the enabled providers from the environment and configured extra endpoints.

Convention (as LiteLLM and the vendors' own SDKs read them): ``<NAME>_API_KEY`` enables a known
provider, a comma-separated value gives a key pool, ``<NAME>_BASE_URL`` overrides its endpoint.
Extra OpenAI-compatible endpoints (vLLM, Ollama, a proxy) come from configuration as
``ExtraEndpoint``. ``demo`` is always enabled.

To add a provider: one entry in ``KNOWN_PROVIDERS``. To add an adapter kind: a branch in
``_construct`` (``anthropic`` and ``gemini`` are imported lazily, only once their module exists).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.providers.base import Provider
from server.providers.demo import DemoProvider
from server.providers.openai_compat import OpenAICompatProvider

log = logging.getLogger(__name__)

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

# Adapter kinds written as separate packages, imported only when they exist.
_LAZY_ADAPTERS = {
    "anthropic": ("server.providers.anthropic", "AnthropicProvider"),
    "gemini": ("server.providers.gemini", "GeminiProvider"),
}


@dataclass(frozen=True, slots=True)
class ExtraEndpoint:
    """An extra OpenAI-compatible upstream from configuration (mirrors LiteLLM ``api_base``).

    The key comes from ``api_key`` (comma-separated for a pool) or from the environment
    variable named by ``api_key_env``; neither is required for keyless local servers.
    """

    name: str
    base_url: str
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_tokens_field: str = "max_tokens"


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
        provider = _construct(name, known, base_url, keys, {})
        if provider is not None:
            entries[name] = ProviderEntry(provider, keys)
    for endpoint in extra:
        if not _NAME.match(endpoint.name):
            raise ValueError(
                f"provider name '{endpoint.name}' must be lowercase letters, digits, '-' or '_'"
            )
        if endpoint.name in entries:
            raise ValueError(f"provider '{endpoint.name}' is configured twice")
        keys = split_keys(endpoint.api_key)
        if endpoint.api_key_env:
            if endpoint.api_key_env not in env:
                raise ValueError(
                    f"provider '{endpoint.name}' reads its key from ${endpoint.api_key_env}, "
                    "which is not set"
                )
            keys += split_keys(env[endpoint.api_key_env])
        known = KnownProvider(
            "openai_compat", endpoint.base_url, max_tokens_field=endpoint.max_tokens_field
        )
        provider = _construct(endpoint.name, known, endpoint.base_url, keys, endpoint.headers)
        assert provider is not None  # openai_compat is always importable
        entries[endpoint.name] = ProviderEntry(provider, keys)
    return entries


def _construct(
    name: str,
    known: KnownProvider,
    base_url: str | None,
    keys: tuple[str, ...],
    headers: Mapping[str, str],
) -> Provider | None:
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
    adapter = _lazy_adapter(known.kind)
    if adapter is None:
        log.warning(
            "provider %s is configured but its %s adapter is not available", name, known.kind
        )
        return None
    # Build with what the adapter's constructor accepts (it may or may not hold the key pool).
    accepted = inspect.signature(adapter).parameters
    kwargs: dict[str, Any] = {}
    if base_url is not None:
        kwargs["base_url"] = base_url
    if "api_keys" in accepted:
        kwargs["api_keys"] = list(keys)
    if headers and "default_headers" in accepted:
        kwargs["default_headers"] = dict(headers)
    provider: Provider = adapter(name, **kwargs)
    return provider


def _lazy_adapter(kind: str) -> Any:
    module_name, class_name = _LAZY_ADAPTERS.get(kind, ("", ""))
    if not module_name:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name, None)
