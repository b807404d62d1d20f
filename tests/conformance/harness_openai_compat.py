"""Conformance harness for the OpenAI-compatible adapter, against ``FakeOpenAI``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from switchboard.v1 import chat_pb2

from server.providers.base import Provider, UpstreamCall
from server.providers.openai_compat import OpenAICompatProvider
from tests.conformance.harness import Expected, Failure, Feature, finish_name, script_failure
from tests.fakes.openai_upstream import (
    FakeOpenAI,
    Reply,
    StreamError,
    ToolCall,
    Usage,
)


@dataclass
class OpenAICompatSession:
    """A FakeOpenAI and an OpenAICompatProvider pointed at it."""

    upstream: FakeOpenAI
    provider: Provider
    api_key: str = "sk-conformance-0123456789abcdef"

    def call(self, *, timeout: float | None = None) -> UpstreamCall:
        return UpstreamCall(model="gpt-4o-mini", api_key=self.api_key, timeout=timeout)

    def reply(self, request: chat_pb2.ChatRequest, expected: Expected) -> Expected:
        usage = None
        if expected.usage is not None:
            usage = Usage(
                prompt_tokens=expected.usage.input_tokens,
                completion_tokens=expected.usage.output_tokens,
                cached_tokens=expected.usage.cached_input_tokens,
                reasoning_tokens=expected.usage.reasoning_tokens,
            )
        self.upstream.script(
            Reply(
                text=expected.text if expected.text else None,
                tool_calls=[
                    ToolCall(name=c.name, arguments=c.arguments or {}, id=c.id)
                    for c in expected.calls
                ],
                finish_reason=finish_name(expected.finish),
                usage=usage,
            )
        )
        return expected

    def fail(self, failure: Failure) -> None:
        script_failure(
            self.upstream,
            failure,
            cut_after=2,
            stream_error=lambda message: StreamError(message, after_chunks=1),
        )


class OpenAICompatHarness:
    """Drives OpenAICompatProvider through the shared suite."""

    name = "openai_compat"
    # The model the embeddings test asks for (the adapter declares Capability.EMBEDDINGS).
    embed_model = "text-embedding-3-small"
    features = frozenset({Feature.WIRE_ERRORS, Feature.STREAM_ERROR_EVENT})

    def provider(self, base_url: str) -> Provider:
        return OpenAICompatProvider("conformance-openai", base_url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[OpenAICompatSession]:
        async with FakeOpenAI() as upstream:
            yield OpenAICompatSession(upstream, self.provider(upstream.base_url))


HARNESS = OpenAICompatHarness()
