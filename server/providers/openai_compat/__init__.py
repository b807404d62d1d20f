"""The OpenAI Chat Completions adapter (OpenAI and every OpenAI-compatible upstream).

Modules: ``encode`` (contract request → wire JSON), ``decode`` (wire response → contract),
``stream`` (SSE → contract frames), ``provider`` (the ``Provider`` implementation).
"""

from server.providers.openai_compat.provider import OpenAICompatProvider

__all__ = ["OpenAICompatProvider"]
