"""Conformance harness for the offline demo provider.

The demo has no upstream to script: ``reply`` ignores the scripted answer and returns what the
demo's documented rules produce for the request (echo, first tool, JSON object, word-count
truncation). It declares no ``Feature``, so the wire-level error cases are skipped with that
reason, and its capabilities leave out parallel tools and cached usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from switchboard.v1 import chat_pb2, types_pb2

from server.providers.base import Provider, UpstreamCall
from server.providers.demo import DemoProvider
from tests.conformance.harness import Expected, ExpectedCall, Failure, Feature, last_user_text


@dataclass
class DemoSession:
    """The demo provider; nothing runs behind it."""

    provider: Provider
    api_key: str = ""

    def call(self, *, timeout: float | None = None) -> UpstreamCall:
        return UpstreamCall(model="echo", api_key=self.api_key, timeout=timeout)

    def reply(self, request: chat_pb2.ChatRequest, expected: Expected) -> Expected:
        choice = request.tool_choice
        tools_off = (
            choice.WhichOneof("choice") == "mode" and choice.mode == types_pb2.TOOL_CHOICE_MODE_NONE
        )
        if request.tools and not tools_off:
            return Expected(
                text="",
                calls=[ExpectedCall(name=request.tools[0].name)],
                finish=types_pb2.FINISH_REASON_TOOL_CALLS,
            )
        if request.response_format.type != types_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED:
            return Expected(text=None, finish=expected.finish)
        text = "Echo: " + last_user_text(request)
        if request.HasField("max_tokens") and len(text.split()) > request.max_tokens:
            return Expected(
                text=" ".join(text.split()[: request.max_tokens]),
                finish=types_pb2.FINISH_REASON_LENGTH,
            )
        return Expected(text=text)

    def fail(self, failure: Failure) -> None:
        raise AssertionError("the demo harness declares no wire features")


class DemoHarness:
    """Drives DemoProvider through the shared suite."""

    name = "demo"
    # The model the embeddings test asks for (the adapter declares Capability.EMBEDDINGS).
    embed_model = "embed"
    features: frozenset[Feature] = frozenset()

    def provider(self, base_url: str) -> Provider:
        return DemoProvider()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DemoSession]:
        yield DemoSession(DemoProvider())


HARNESS = DemoHarness()
