"""providers.frames: what arrived in one read is merged; nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest
from switchboard.v1 import chat_pb2

from server.core.errors import UpstreamRateLimitedError, UpstreamStreamError
from server.providers.frames import coalesce, decode_batch

F = chat_pb2.StreamChatResponse


def text(t: str) -> F:
    return F(text=chat_pb2.TextDelta(text=t))


def thought(t: str, signature: str = "") -> F:
    return F(reasoning=chat_pb2.ReasoningDelta(text=t, signature=signature))


def call(index: int, arguments: str, id: str = "", name: str = "") -> F:
    return F(tool_call=chat_pb2.ToolCallDelta(index=index, id=id, name=name, arguments=arguments))


def kinds(frames: list[F]) -> list[str | None]:
    return [f.WhichOneof("frame") for f in frames]


def test_adjacent_text_and_reasoning_deltas_join() -> None:
    out = coalesce([thought("Let "), thought("me."), text("One "), text("two")])
    assert kinds(out) == ["reasoning", "text"]
    assert out[0].reasoning.text == "Let me." and out[1].text.text == "One two"


def test_a_tool_calls_fragments_join_and_a_new_call_stays_apart() -> None:
    out = coalesce(
        [
            call(0, '{"ci', id="c1", name="weather"),
            call(0, 'ty":"Paris"}'),
            call(1, "{}", id="c2", name="time"),
            call(1, ""),
        ]
    )
    assert kinds(out) == ["tool_call", "tool_call"]
    assert (out[0].tool_call.id, out[0].tool_call.arguments) == ("c1", '{"city":"Paris"}')
    assert (out[1].tool_call.id, out[1].tool_call.arguments) == ("c2", "{}")


def test_signatures_order_and_other_kinds_are_kept() -> None:
    frames = [thought("a"), thought("", signature="SIG"), text("x"), thought("b"), text("y")]
    out = coalesce(frames)
    assert kinds(out) == ["reasoning", "reasoning", "text", "reasoning", "text"]
    assert out[1].reasoning.signature == "SIG"
    single = [text("only")]
    assert coalesce(single) is single


def feed(event: bytes, data: Any) -> list[F]:
    if data == "error":
        raise UpstreamRateLimitedError("overloaded", provider="p")
    return [text(data)]


def test_decode_batch_keeps_the_frames_before_an_error_and_returns_it() -> None:
    frames, error = decode_batch(
        [(b"", "a"), (b"", "b"), (b"", "error"), (b"", "c")], feed, lambda: False
    )
    assert [f.text.text for f in frames] == ["ab"]
    assert isinstance(error, UpstreamRateLimitedError)
    bad = UpstreamStreamError("not JSON", provider="p", status=200)
    frames, error = decode_batch([(b"", "a"), (b"", bad)], feed, lambda: False)
    assert [f.text.text for f in frames] == ["a"] and error is bad


def test_decode_batch_stops_after_the_event_that_finishes() -> None:
    seen: list[str] = []

    def record(event: bytes, data: Any) -> list[F]:
        seen.append(data)
        return [text(data)]

    frames, error = decode_batch(
        [(b"", "a"), (b"", "end"), (b"", "late")], record, lambda: seen[-1] == "end"
    )
    assert error is None and seen == ["a", "end"] and frames[0].text.text == "aend"


@pytest.mark.parametrize("n", [0, 1])
def test_nothing_to_merge(n: int) -> None:
    frames = [text("x")] * n
    assert coalesce(frames) == frames


def test_long_runs_join_in_order() -> None:
    words = [f"w{i} " for i in range(500)]
    frames = [text(w) for w in words] + [call(0, "{", id="c", name="f")]
    frames += [call(0, str(i)) for i in range(300)] + [thought("a"), thought("b"), thought("c")]
    out = coalesce(frames)
    assert kinds(out) == ["text", "tool_call", "reasoning"]
    assert out[0].text.text == "".join(words)
    assert out[1].tool_call.arguments == "{" + "".join(str(i) for i in range(300))
    assert out[2].reasoning.text == "abc"
