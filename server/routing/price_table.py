"""The shipped default price table: USD per million tokens, keyed `provider/model`.

Dated 2026-11-25. Compiled from the providers' public list prices (standard tier, pay as you
go, no batch or priority discounts, prompts under any long-context threshold) as found in
stored copies of these pages:

- OpenAI: developers.openai.com/api/docs/pricing (GPT-5.5 / 5.4 family as listed mid-2026;
  GPT-5, 4.1 and 4o rows unchanged since 2025).
- Anthropic: platform.claude.com/docs/en/about-claude/pricing and the per-model overview pages
  (Opus 5.5, Opus 5, Sonnet 5.5 after its 2026-10-07 cache-read cut, Haiku 5.5's <=100K-token
  tier); cache writes are the 5-minute rate.
- Google: ai.google.dev/gemini-api/docs/pricing (<=200K-token prompt tier for the Pro models;
  "cached_input" is the context-caching read price).
- Groq: groq.com/pricing; Mistral: mistral.ai/pricing; DeepSeek: api-docs.deepseek.com
  (quick_start/pricing; off-peak standard rates). These three were verified less thoroughly.

Prices change often and long-context, priority and regional tiers are not modelled: operators
override any row with a `price:` on a deployment in the config file. `cached_input` /
`cache_write` are None where the provider does not bill them separately (cost then uses the
input rate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from server.routing.cost import Price

PRICES_AS_OF = "2026-11-25"


def _p(inp: float, out: float, cached: float | None = None, write: float | None = None) -> Price:
    return Price(input=inp, output=out, cached_input=cached, cache_write=write)


_TABLE: dict[str, Price] = {
    # --- OpenAI (cached input billed at the discounted rate; no cache-write charge) ---------
    "openai/gpt-5.5": _p(5.00, 30.00, 0.50),
    "openai/gpt-5.4": _p(2.50, 15.00, 0.25),
    "openai/gpt-5.4-mini": _p(0.75, 4.50, 0.075),
    "openai/gpt-5.4-nano": _p(0.20, 1.25, 0.02),
    "openai/gpt-5.2": _p(1.75, 14.00, 0.175),
    "openai/gpt-5.1": _p(1.25, 10.00, 0.125),
    "openai/gpt-5": _p(1.25, 10.00, 0.125),
    "openai/gpt-5-mini": _p(0.25, 2.00, 0.025),
    "openai/gpt-5-nano": _p(0.05, 0.40, 0.005),
    "openai/gpt-4.1": _p(2.00, 8.00, 0.50),
    "openai/gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "openai/gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "openai/gpt-4o": _p(2.50, 10.00, 1.25),
    "openai/gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "openai/o3": _p(2.00, 8.00, 0.50),
    "openai/o4-mini": _p(1.10, 4.40, 0.275),
    # --- Anthropic (cache hits and 5-minute cache writes billed separately) ----------------
    "anthropic/claude-opus-5-5": _p(4.00, 20.00, 0.20, 5.00),
    "anthropic/claude-opus-5": _p(5.00, 25.00, 0.50, 6.25),
    "anthropic/claude-sonnet-5-5": _p(2.00, 10.00, 0.10, 2.50),
    "anthropic/claude-sonnet-5": _p(2.00, 10.00, 0.20, 2.50),
    "anthropic/claude-haiku-5-5": _p(0.10, 0.50, 0.01, 0.125),
    "anthropic/claude-opus-4-8": _p(5.00, 25.00, 0.50, 6.25),
    "anthropic/claude-opus-4-7": _p(5.00, 25.00, 0.50, 6.25),
    "anthropic/claude-opus-4-6": _p(5.00, 25.00, 0.50, 6.25),
    "anthropic/claude-opus-4-5": _p(5.00, 25.00, 0.50, 6.25),
    "anthropic/claude-opus-4-1": _p(15.00, 75.00, 1.50, 18.75),
    "anthropic/claude-sonnet-4-6": _p(3.00, 15.00, 0.30, 3.75),
    "anthropic/claude-sonnet-4-5": _p(3.00, 15.00, 0.30, 3.75),
    "anthropic/claude-sonnet-4": _p(3.00, 15.00, 0.30, 3.75),
    "anthropic/claude-haiku-4-5": _p(1.00, 5.00, 0.10, 1.25),
    "anthropic/claude-3-5-haiku": _p(0.80, 4.00, 0.08, 1.00),
    "anthropic/claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
    # --- Google Gemini (implicit/explicit cache reads discounted; storage not modelled) ----
    "gemini/gemini-3.1-pro-preview": _p(2.00, 12.00, 0.20),
    "gemini/gemini-3-pro-preview": _p(2.00, 12.00, 0.20),
    "gemini/gemini-3-flash-preview": _p(0.50, 3.00, 0.05),
    "gemini/gemini-2.5-pro": _p(1.25, 10.00, 0.125),
    "gemini/gemini-2.5-flash": _p(0.30, 2.50, 0.03),
    "gemini/gemini-2.5-flash-lite": _p(0.10, 0.40, 0.01),
    # --- Groq ----------------------------------------------------------------------------
    "groq/openai/gpt-oss-120b": _p(0.15, 0.60, 0.075),
    "groq/openai/gpt-oss-20b": _p(0.075, 0.30, 0.0375),
    "groq/llama-3.3-70b-versatile": _p(0.59, 0.79),
    "groq/llama-3.1-8b-instant": _p(0.05, 0.08),
    # --- Mistral -------------------------------------------------------------------------
    "mistral/mistral-large-latest": _p(0.50, 1.50),
    "mistral/mistral-medium-latest": _p(0.40, 2.00),
    "mistral/mistral-small-latest": _p(0.10, 0.30),
    "mistral/codestral-latest": _p(0.30, 0.90),
    # --- DeepSeek (cache-hit input discounted) -------------------------------------------
    "deepseek/deepseek-chat": _p(0.28, 0.42, 0.028),
    "deepseek/deepseek-reasoner": _p(0.28, 0.42, 0.028),
    # --- Embedding models (input only; no output tokens) --------------------------------
    "openai/text-embedding-3-small": _p(0.02, 0.0),
    "openai/text-embedding-3-large": _p(0.13, 0.0),
    "openai/text-embedding-ada-002": _p(0.10, 0.0),
    "gemini/gemini-embedding-001": _p(0.15, 0.0),
    "mistral/mistral-embed": _p(0.10, 0.0),
}
# Rows priced for input only (embedding models).
EMBEDDING_MODELS = frozenset(k for k, v in _TABLE.items() if v.output == 0.0)

DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(_TABLE)

# Most output tokens (reasoning included) one response of a model may hold, from the same
# providers' model pages: what a request without max_tokens is reserved for. Unlisted models use
# DEFAULT_MAX_OUTPUT_TOKENS unless their deployment sets `max_output_tokens`; Anthropic's come
# from its adapter's model table.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768
_MAX_OUTPUT: dict[str, int] = {
    "openai/gpt-5.5": 128_000,
    "openai/gpt-5.4": 128_000,
    "openai/gpt-5.4-mini": 128_000,
    "openai/gpt-5.4-nano": 128_000,
    "openai/gpt-5.2": 128_000,
    "openai/gpt-5.1": 128_000,
    "openai/gpt-5": 128_000,
    "openai/gpt-5-mini": 128_000,
    "openai/gpt-5-nano": 128_000,
    "openai/gpt-4.1": 32_768,
    "openai/gpt-4.1-mini": 32_768,
    "openai/gpt-4.1-nano": 32_768,
    "openai/gpt-4o": 16_384,
    "openai/gpt-4o-mini": 16_384,
    "openai/o3": 100_000,
    "openai/o4-mini": 100_000,
    "gemini/gemini-3.1-pro-preview": 65_536,
    "gemini/gemini-3-pro-preview": 65_536,
    "gemini/gemini-3-flash-preview": 65_536,
    "gemini/gemini-2.5-pro": 65_536,
    "gemini/gemini-2.5-flash": 65_536,
    "gemini/gemini-2.5-flash-lite": 65_536,
    "groq/openai/gpt-oss-120b": 65_536,
    "groq/openai/gpt-oss-20b": 65_536,
    "groq/llama-3.3-70b-versatile": 32_768,
    "groq/llama-3.1-8b-instant": 131_072,
    "deepseek/deepseek-chat": 8_192,
    "deepseek/deepseek-reasoner": 65_536,
}
MAX_OUTPUT_TOKENS: Mapping[str, int] = MappingProxyType(_MAX_OUTPUT)


def lookup_max_output(deployment_id: str) -> int | None:
    """The listed output limit of `provider/model` (dated snapshots match their model)."""
    found = MAX_OUTPUT_TOKENS.get(deployment_id)
    if found is None:
        found = MAX_OUTPUT_TOKENS.get(_SNAPSHOT.sub("", deployment_id))
    return found


# Dated snapshot suffixes: `-2024-07-18`, `-20250929`, `@20251001`, `-latest` is kept as is.
_SNAPSHOT = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{8})$")


def lookup_price(prices: Mapping[str, Price], deployment_id: str) -> Price | None:
    """The price of `provider/model`, also for a dated snapshot of a listed model."""
    found = prices.get(deployment_id)
    if found is not None:
        return found
    base = _SNAPSHOT.sub("", deployment_id)
    if base != deployment_id:
        return prices.get(base)
    return None
