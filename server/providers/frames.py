"""Coalescing stream frames that arrived together.

An upstream often delivers several SSE events in one network read (a busy connection, a
provider that flushes in bursts). Each frame costs the same on its way through the executor,
the Gateway, the transport's encoder and its write, whatever it carries, so the adapters merge
the frames decoded from one read before yielding them: adjacent text deltas become one, as do
adjacent reasoning text deltas and the argument fragments of one tool call. Nothing waits for
more data to merge, so time to first token is unchanged; only what is already here is joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from switchboard.v1 import chat_pb2

from server.core.errors import UpstreamError

Frame = chat_pb2.StreamChatResponse
# The frames of one read and the error one of its events reported (raised after the frames).
Decoded = tuple[list[Frame], UpstreamError | None]


def decode_batch(
    batch: Iterable[tuple[bytes, Any]],
    feed: Callable[[bytes, Any], list[Frame]],
    done: Callable[[], bool],
) -> Decoded:
    """The coalesced frames ``feed`` makes of one read's events, up to the one after which
    ``done()``, and the error an event reported (an event whose data is an ``UpstreamError``
    is one: the adapter put it there for data it could not parse). The frames decoded before
    an error are kept, so that text which reached the gateway reaches the client."""
    frames: list[Frame] = []
    try:
        for event, data in batch:
            if isinstance(data, UpstreamError):
                raise data
            frames += feed(event, data)
            if done():
                break
    except UpstreamError as exc:
        return coalesce(frames), exc
    return coalesce(frames), None


def coalesce(frames: list[Frame]) -> list[Frame]:
    """``frames`` with each run of mergeable neighbours joined into its first frame."""
    if len(frames) < 2:
        return frames
    out = [frames[0]]
    last = frames[0]
    last_kind = last.WhichOneof("frame")
    for frame in frames[1:]:
        kind = frame.WhichOneof("frame")
        if kind == last_kind and _merge(last, frame, kind):
            continue
        out.append(frame)
        last, last_kind = frame, kind
    return out


def _merge(into: Frame, frame: Frame, kind: str | None) -> bool:
    if kind == "text":
        into.text.text += frame.text.text
        return True
    if kind == "reasoning":
        a, b = into.reasoning, frame.reasoning
        # Signatures and redacted blocks close a thinking block: they stay frames of their own.
        if a.signature or a.redacted_data or b.signature or b.redacted_data:
            return False
        a.text += b.text
        return True
    if kind == "tool_call":
        a_call, b_call = into.tool_call, frame.tool_call
        # A later fragment of the same call (no id, name or signature of its own).
        if a_call.index != b_call.index or b_call.id or b_call.name or b_call.signature:
            return False
        a_call.arguments += b_call.arguments
        return True
    return False
