"""The one ``Provider`` protocol every upstream adapter implements (house style 1).

An adapter turns a ``switchboard.v1.ChatRequest`` into its vendor's wire format, sends it over
the shared pooled HTTP client and turns the answer back into contract messages. Vendor wire
types stay private to the adapter's module; transport exceptions and HTTP error statuses are mapped
to ``server.core.errors.Upstream*`` inside the adapter (house style 4), so callers only ever see
gateway errors. Adapters are stateless per call: which key and model to use arrives in
``UpstreamCall``, so key pools and routing live in ``server.routing``, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from switchboard.v1 import chat_pb2, types_pb2


class Capability(StrEnum):
    """Features an adapter declares; the conformance suite is gated on them (house style 6)."""

    TEXT = "text"
    STREAM = "stream"
    TOOLS = "tools"
    PARALLEL_TOOLS = "parallel_tools"
    STREAM_TOOLS = "stream_tools"
    JSON_MODE = "json_mode"
    JSON_SCHEMA = "json_schema"
    IMAGES = "images"
    MAX_TOKENS = "max_tokens"
    CACHED_USAGE = "cached_usage"
    REASONING = "reasoning"
    PASSTHROUGH = "passthrough"
    EMBEDDINGS = "embeddings"


# What the native-API adapters (Anthropic, Gemini) can do: everything but sending unknown
# request fields on as they are (they map a known list of passthrough fields instead) and
# embeddings, which each declares itself.
NATIVE_CAPABILITIES = frozenset(Capability) - {Capability.PASSTHROUGH, Capability.EMBEDDINGS}


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """Everything one attempt needs besides the request: which model, which key, how long."""

    model: str
    api_key: str = field(repr=False)
    # Seconds this attempt may take until the first byte (non-streamed: the whole response);
    # None means the adapter's configured default.
    timeout: float | None = None
    # Streams only: where the adapter keeps the usage reported so far (Anthropic's input
    # tokens at message_start, Gemini's running count, OpenAI's usage chunk), so that a stream
    # that ends early is billed for what the upstream reported. None: nobody asks.
    meter: types_pb2.Usage | None = field(default=None, compare=False)


@runtime_checkable
class Provider(Protocol):
    """One configured upstream (OpenAI, Groq, a local vLLM...) speaking one API schema."""

    # Instance name used in model ids (`openai` in `openai/gpt-4o-mini`).
    name: str
    # Which adapter module implements it (`openai_compat`, `anthropic`, `gemini`, `demo`).
    kind: str
    capabilities: frozenset[Capability]

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        """One completion. Fills message, finish_reason and usage; the core fills the rest."""
        ...

    def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """Streams text / tool_call / reasoning frames, then exactly one ``end`` frame carrying
        finish_reason and usage. Raises ``UpstreamStreamError`` when the stream breaks or
        carries an error event, and never ends silently without an ``end`` frame."""
        ...

    async def aclose(self) -> None:
        """Releases what the adapter owns (not the shared HTTP client)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """A provider that also serves embeddings (``Capability.EMBEDDINGS``); the executor refuses
    an embedding request on any other with ``UnsupportedFeatureError``, so a route falls back."""

    async def embed(
        self, request: chat_pb2.EmbedRequest, call: UpstreamCall
    ) -> chat_pb2.EmbedResponse:
        """The vectors, in input order, and usage; the core fills the rest."""
        ...
