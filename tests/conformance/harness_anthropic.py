"""Conformance harness for the Anthropic Messages adapter, against ``FakeAnthropic``.

The session's model is ``claude-sonnet-4-5``, which has native structured output, so the JSON
schema case goes through ``output_config.format`` while JSON mode goes through the forced
tool: the harness asks the adapter's own encoder which one a request uses and scripts the fake
accordingly. With the forced tool the answer is the tool's parsed ``input`` re-serialised, so
the expected text is the compact JSON of the scripted object. Contract usage counts cached
tokens inside ``input_tokens``; Anthropic's wire ``input_tokens`` excludes them, so the harness
subtracts them when scripting. An in-stream error is scripted as ``api_error`` (the stream
broke server-side); ``overloaded_error`` maps to ``UpstreamServerError`` (see unit tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.providers.anthropic import AnthropicProvider
from server.providers.anthropic.encode import encode_request
from server.providers.base import Provider, UpstreamCall
from tests.conformance.harness import Expected, Failure, Feature, script_failure
from tests.fakes.anthropic_upstream import (
    FakeAnthropic,
    Reply,
    StreamError,
    ToolCall,
    Usage,
)

MODEL = "claude-sonnet-4-5"
STOP_REASONS = {
    types_pb2.FINISH_REASON_STOP: "end_turn",
    types_pb2.FINISH_REASON_LENGTH: "max_tokens",
    types_pb2.FINISH_REASON_TOOL_CALLS: "tool_use",
    types_pb2.FINISH_REASON_CONTENT_FILTER: "refusal",
}


@dataclass
class AnthropicSession:
    """A FakeAnthropic and an AnthropicProvider pointed at it."""

    upstream: FakeAnthropic
    provider: Provider
    api_key: str = "sk-ant-api03-conformance-0123456789abcdef"

    def call(self, *, timeout: float | None = None) -> UpstreamCall:
        return UpstreamCall(model=MODEL, api_key=self.api_key, timeout=timeout)

    def reply(self, request: chat_pb2.ChatRequest, expected: Expected) -> Expected:
        usage = None
        if expected.usage is not None:
            u = expected.usage
            usage = Usage(
                input_tokens=u.input_tokens - u.cached_input_tokens - u.cache_write_input_tokens,
                output_tokens=u.output_tokens,
                cache_read_input_tokens=u.cached_input_tokens,
                cache_creation_input_tokens=u.cache_write_input_tokens,
            )
        json_tool = encode_request(request, MODEL).json_tool
        if json_tool is not None:
            value = orjson.loads(expected.text or "{}")
            self.upstream.script(
                Reply(tool_calls=[ToolCall(json_tool, value)], stop_reason="tool_use", usage=usage)
            )
            return replace(expected, text=orjson.dumps(value).decode())
        self.upstream.script(
            Reply(
                text=expected.text if expected.text else None,
                tool_calls=[
                    ToolCall(name=c.name, arguments=c.arguments or {}, id=c.id)
                    for c in expected.calls
                ],
                stop_reason=STOP_REASONS[expected.finish],
                usage=usage,
            )
        )
        return expected

    def fail(self, failure: Failure) -> None:
        script_failure(
            self.upstream,
            failure,
            cut_after=3,
            stream_error=lambda message: StreamError(message, after_chunks=2, type="api_error"),
        )


class AnthropicHarness:
    """Drives AnthropicProvider through the shared suite."""

    name = "anthropic"
    # Anthropic has no embeddings API (the adapter does not declare Capability.EMBEDDINGS).
    embed_model = ""
    features = frozenset({Feature.WIRE_ERRORS, Feature.STREAM_ERROR_EVENT})

    def provider(self, base_url: str) -> Provider:
        return AnthropicProvider("conformance-anthropic", base_url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AnthropicSession]:
        async with FakeAnthropic() as upstream:
            yield AnthropicSession(upstream, self.provider(upstream.base_url))


HARNESS = AnthropicHarness()
