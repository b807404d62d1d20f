"""Anthropic Messages API adapter (encode, decode, stream, errors; models holds the defaults)."""

from server.providers.anthropic.provider import AnthropicProvider

__all__ = ["AnthropicProvider"]
