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
    """``frames`` with each run of mergeable neighbours joined into its first frame.

    A run's pieces are joined once: appending to a protobuf string field copies the whole
    field each time, which made a burst of n deltas cost O(n^2)."""
    if len(frames) < 2:
        return frames
    out: list[Frame] = []
    head = frames[0]
    head_kind = head.WhichOneof("frame")
    run: list[Frame] = []
    for frame in frames[1:]:
        kind = frame.WhichOneof("frame")
        if kind == head_kind and _joins(head, frame, kind):
            run.append(frame)
            continue
        out.append(_joined(head, head_kind, run) if run else head)
        head, head_kind, run = frame, kind, []
    out.append(_joined(head, head_kind, run) if run else head)
    return out


def _joins(head: Frame, frame: Frame, kind: str | None) -> bool:
    """Whether ``frame`` continues the run that ``head`` opened."""
    if kind == "text":
        return True
    if kind == "reasoning":
        a, b = head.reasoning, frame.reasoning
        # Signatures and redacted blocks close a thinking block: they stay frames of their own.
        return not (a.signature or a.redacted_data or b.signature or b.redacted_data)
    if kind == "tool_call":
        a_call, b_call = head.tool_call, frame.tool_call
        # A later fragment of the same call (no id, name or signature of its own).
        return a_call.index == b_call.index and not (b_call.id or b_call.name or b_call.signature)
    return False


def _joined(head: Frame, kind: str | None, run: list[Frame]) -> Frame:
    if kind == "text":
        head.text.text = "".join([head.text.text, *[f.text.text for f in run]])
    elif kind == "reasoning":
        head.reasoning.text = "".join([head.reasoning.text, *[f.reasoning.text for f in run]])
    else:
        call = head.tool_call
        call.arguments = "".join([call.arguments, *[f.tool_call.arguments for f in run]])
    return head
