"""Conformance harness for the Gemini adapter, against ``FakeGemini``.

Gemini gives function calls no ids, so the fake is scripted without them (as the real API
answers) and the expected calls accept any id: the adapter must generate distinct ones. Gemini
reports thinking apart from the answer (``thoughtsTokenCount``), so the contract's
``output_tokens`` minus ``reasoning_tokens`` is scripted as ``candidatesTokenCount``. Tool calls
finish with Gemini's ``STOP``; the adapter turns that into ``tool_calls``. An in-stream error is
scripted as an ``INTERNAL`` error object inside the 200 stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from switchboard.v1 import chat_pb2, types_pb2

from server.providers.base import Provider, UpstreamCall
from server.providers.gemini import GeminiProvider
from tests.conformance.harness import Expected, Failure, Feature, script_failure
from tests.fakes.gemini_upstream import (
    FakeGemini,
    Reply,
    StreamError,
    ToolCall,
    Usage,
)

MODEL = "gemini-2.5-flash"
FINISH_REASONS = {
    types_pb2.FINISH_REASON_STOP: "STOP",
    types_pb2.FINISH_REASON_LENGTH: "MAX_TOKENS",
    types_pb2.FINISH_REASON_TOOL_CALLS: "STOP",
    types_pb2.FINISH_REASON_CONTENT_FILTER: "SAFETY",
}


@dataclass
class GeminiSession:
    """A FakeGemini and a GeminiProvider pointed at it."""

    upstream: FakeGemini
    provider: Provider
    api_key: str = "AIzaSyConformance-0123456789abcdefghij"

    def call(self, *, timeout: float | None = None) -> UpstreamCall:
        return UpstreamCall(model=MODEL, api_key=self.api_key, timeout=timeout)

    def reply(self, request: chat_pb2.ChatRequest, expected: Expected) -> Expected:
        usage = None
        if expected.usage is not None:
            u = expected.usage
            usage = Usage(
                prompt_tokens=u.input_tokens,
                candidates_tokens=u.output_tokens - u.reasoning_tokens,
                cached_tokens=u.cached_input_tokens,
                thoughts_tokens=u.reasoning_tokens,
            )
        self.upstream.script(
            Reply(
                text=expected.text if expected.text else None,
                tool_calls=[
                    ToolCall(name=c.name, arguments=c.arguments or {}) for c in expected.calls
                ],
                finish_reason=FINISH_REASONS[expected.finish],
                usage=usage,
            )
        )
        return replace(expected, calls=[replace(c, id=None) for c in expected.calls])

    def fail(self, failure: Failure) -> None:
        script_failure(
            self.upstream,
            failure,
            cut_after=2,
            stream_error=lambda message: StreamError(message, after_chunks=2),
        )


class GeminiHarness:
    """Drives GeminiProvider through the shared suite."""

    name = "gemini"
    # The model the embeddings test asks for (the adapter declares Capability.EMBEDDINGS).
    embed_model = "gemini-embedding-001"
    features = frozenset({Feature.WIRE_ERRORS, Feature.STREAM_ERROR_EVENT})

    def provider(self, base_url: str) -> Provider:
        return GeminiProvider("conformance-gemini", base_url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[GeminiSession]:
        async with FakeGemini() as upstream:
            yield GeminiSession(upstream, self.provider(upstream.base_url))


HARNESS = GeminiHarness()
