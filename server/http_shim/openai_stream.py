"""``switchboard.v1`` stream frames → OpenAI ``chat.completion.chunk`` server-sent events.

Mirrors OpenAI's streamed Chat Completions framing (see the recorded streams in
``../shared/fixtures/provider-wire/openai``): a first chunk with ``role: assistant``, content
deltas, tool-call deltas (``index``/``id``/``type``/``function.name`` on the first delta for an
index, argument fragments after), a chunk with ``finish_reason`` and an empty delta, then — when
``stream_options.include_usage`` is set — a chunk with ``choices: []`` and ``usage`` (every other
chunk then carries ``usage: null``), then ``data: [DONE]``. An error after the stream started is
one ``data: {"error": {...}}`` event and no ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2

from server.providers.openai_compat.codec import (
    completion_id,
    finish_reason_json,
    tool_call_json,
    usage_json,
)

DONE = b"data: [DONE]\n\n"


def sse_event(payload: Any) -> bytes:
    """One ``data:`` event carrying JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChunkEncoder:
    """Encodes one stream's frames; the constant part of every chunk is built once."""

    __slots__ = ("_head", "_include_usage", "_seen_tools", "_tail", "_usage_head")

    def __init__(self, start: chat_pb2.StreamStart, *, include_usage: bool) -> None:
        common = orjson.dumps(
            {
                "id": completion_id(start.id),
                "object": "chat.completion.chunk",
                "created": start.created,
                "model": start.model,
                "system_fingerprint": None,
            }
        )[:-1]
        # `{"id":…,"choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":`
        self._head = b"data: " + common + b',"choices":[{"index":0,"delta":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._usage_head = b"data: " + common + b',"choices":[],"usage":'
        self._include_usage = include_usage
        self._seen_tools: set[int] = set()

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return (
            self._head + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]" + self._tail
        )

    def role(self, *, content_null: bool = False) -> bytes:
        """The first chunk: ``role: assistant`` (content null when a tool call comes first)."""
        if content_null:
            return self._chunk(b'{"role":"assistant","content":null}')
        return self._chunk(b'{"role":"assistant","content":"","refusal":null}')

    def frame(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        """Bytes for a text, reasoning or tool-call frame (empty when there is nothing to send)."""
        kind = frame.WhichOneof("frame")
        if kind == "text":
            return self._chunk(orjson.dumps({"content": frame.text.text}))
        if kind == "tool_call":
            return self._chunk(orjson.dumps({"tool_calls": [self._tool_delta(frame.tool_call)]}))
        if kind == "reasoning" and frame.reasoning.text:
            # DeepSeek's streamed reasoning field; OpenAI sends none.
            return self._chunk(orjson.dumps({"reasoning_content": frame.reasoning.text}))
        return b""

    def _tool_delta(self, delta: chat_pb2.ToolCallDelta) -> dict[str, Any]:
        if delta.index in self._seen_tools:
            return {"index": delta.index, "function": {"arguments": delta.arguments}}
        self._seen_tools.add(delta.index)
        return {"index": delta.index, **tool_call_json(delta.id, delta.name, delta.arguments)}

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        reason = finish_reason_json(end.finish_reason)
        out = self._chunk(b"{}", b'"' + reason.encode() + b'"')
        if self._include_usage:
            out += self._usage_head + orjson.dumps(usage_json(end.usage, end.cost)) + b"}\n\n"
        return out + DONE
