"""Streaming resilience over real HTTP: fall back freely before the first chunk (cut, stalled,
error event), never after it (the stream ends with an error, not a silent truncation)."""

from __future__ import annotations

import asyncio
import time

import pytest
from switchboard.v1 import chat_pb2

from server.config import RetryConfig, TimeoutConfig
from server.core.errors import GatewayError, UpstreamTimeoutError
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import StreamError as AnthropicStreamError
from tests.fakes.openai_upstream import CutStream, FakeOpenAI, Stall, Status, StreamError
from tests.integration.test_routing_harness import attempts, request, routed

ONE_TRY = RetryConfig(max_attempts_per_deployment=1)


def text(frames: list[chat_pb2.StreamChatResponse]) -> str:
    return "".join(f.text.text for f in frames if f.HasField("text"))


async def test_cut_before_the_first_token_falls_back() -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        # after_chunks=1: only the role chunk goes out, then the connection drops.
        a.script(CutStream(after_chunks=1), Status(503))
        frames = await h.stream(text="over the wire")
        assert frames[0].HasField("start") and frames[-1].HasField("end")
        assert text(frames) == "Fake reply to: over the wire"
        end = frames[-1].end
        assert end.route.deployment == "b/m"
        outcomes = [o for _, o in attempts(end.route)]
        assert outcomes[0] in ("STREAM_ERROR", "CONNECTION_ERROR")
        assert outcomes[1:] == ["SERVER_ERROR", "SUCCESS"]
        # The start frame already names where the stream is served from.
        assert frames[0].start.route.deployment == "b/m"


async def test_a_stall_before_the_first_token_falls_back() -> None:
    timeouts = TimeoutConfig(attempt=0.3, stream_idle=5.0)
    async with (
        FakeOpenAI() as a,
        FakeOpenAI() as b,
        routed({"a": a, "b": b}, retry=ONE_TRY, timeouts=timeouts) as h,
    ):
        a.script(Stall())
        started = time.monotonic()
        frames = await h.stream()
        assert time.monotonic() - started < 1.5
        assert attempts(frames[-1].end.route) == [("a/m", "TIMEOUT"), ("b/m", "SUCCESS")]
        for _ in range(50):
            if a.cancelled:
                break
            await asyncio.sleep(0.02)
        assert a.cancelled == 1


async def test_an_error_event_before_the_first_token_falls_back() -> None:
    async with (
        FakeAnthropic() as a,
        FakeOpenAI() as b,
        routed({"claude": a, "b": b}, retry=ONE_TRY) as h,
    ):
        a.script(AnthropicStreamError("Overloaded", after_chunks=0))
        frames = await h.stream()
        assert frames[-1].end.route.deployment == "b/m"
        assert attempts(frames[-1].end.route)[0][0] == "claude/m"


async def test_cut_after_the_first_token_ends_with_an_error() -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(CutStream(after_chunks=3))
        got: list[chat_pb2.StreamChatResponse] = []
        with pytest.raises(GatewayError) as info:
            async for frame in h.gateway.stream_chat(request(text="one two three"), h.ctx()):
                got.append(frame)
        assert info.value.retryable  # a stream/connection error, surfaced to the client
        assert got[0].HasField("start") and not any(f.HasField("end") for f in got)
        assert text(got) != ""  # some text went out before the cut...
        assert h.served() == {"a": 1, "b": 0}  # ...so there was no fallback


async def test_an_error_event_after_the_first_token_ends_with_an_error() -> None:
    async with FakeOpenAI() as a, FakeOpenAI() as b, routed({"a": a, "b": b}) as h:
        a.script(StreamError("upstream exploded", after_chunks=2))
        with pytest.raises(GatewayError):
            await h.stream(text="one two three four")
        assert h.served() == {"a": 1, "b": 0}


async def test_a_stall_after_the_first_token_times_out_with_an_error() -> None:
    timeouts = TimeoutConfig(attempt=5.0, stream_idle=0.3)
    async with (
        FakeOpenAI() as a,
        FakeOpenAI() as b,
        routed({"a": a, "b": b}, timeouts=timeouts) as h,
    ):
        a.script(Stall(after_chunks=3))
        got: list[chat_pb2.StreamChatResponse] = []
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError):
            async for frame in h.gateway.stream_chat(request(text="one two three"), h.ctx()):
                got.append(frame)
        assert 0.25 < time.monotonic() - started < 2.0
        assert text(got) != "" and h.served() == {"a": 1, "b": 0}
        for _ in range(50):
            if a.cancelled:
                break
            await asyncio.sleep(0.02)
        assert a.cancelled == 1


async def test_a_client_leaving_mid_stream_cancels_the_upstream() -> None:
    async with FakeOpenAI() as a, routed({"a": a}) as h:
        a.script(Stall(after_chunks=3))
        stream = h.gateway.stream_chat(request(text="one two three"), h.ctx())
        first = await stream.__anext__()
        assert first.HasField("start")
        await stream.aclose()
        for _ in range(50):
            if a.cancelled:
                break
            await asyncio.sleep(0.02)
        assert a.cancelled == 1
        # Leaving is not the upstream's fault.
        assert h.health.snapshot("a/m").error_score == 0.0
