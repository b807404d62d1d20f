"""Gemini API adapter (encode, decode, stream, errors)."""

from server.providers.gemini.provider import GeminiProvider

__all__ = ["GeminiProvider"]
