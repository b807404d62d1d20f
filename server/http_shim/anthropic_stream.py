"""``switchboard.v1`` stream frames → Anthropic Messages SSE events (``/v1/messages``, streamed).

Mirrors the event sequence of Anthropic's own streams ("Streaming Messages"):
``message_start``, then per content block ``content_block_start`` → ``content_block_delta``s →
``content_block_stop``, then ``message_delta`` (stop reason, final usage) and ``message_stop``;
an error after the 200 has gone out is one ``event: error`` and the stream ends. Usage, stop
reasons and ids come from the Anthropic adapter's ``codec``, as for non-streamed responses.
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2

from server.http_shim.anthropic_convert import error_json
from server.providers.anthropic.codec import (
    message_id,
    stop_reason,
    tool_use_id,
    tool_use_json,
    usage_json,
)

Json = dict[str, Any]


def sse_event(name: str, data: Json) -> bytes:
    """One SSE event with Anthropic's ``event:`` line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


MESSAGE_STOP = sse_event("message_stop", {"type": "message_stop"})
PING = sse_event("ping", {"type": "ping"})

_TEXT, _TOOL, _THINKING = 1, 2, 3


class StreamEncoder:
    """Contract stream frames → Anthropic SSE events, with correct content block indexes.

    One block is open at a time, as in Anthropic's own streams: a new one starts when the kind
    (thinking, text, tool_use) changes. Anthropic blocks never reopen, but OpenAI-style
    upstreams may interleave the argument fragments of parallel tool calls. So the first tool
    call of a run streams live, and a call that starts while another tool block is open is
    held back and sent whole (start, one ``input_json_delta``, stop) when that block closes:
    the event sequence stays exact and no fragment is lost.
    """

    __slots__ = (
        "_has_tools",
        "_head",
        "_held",
        "_index",
        "_kind",
        "_model",
        "_tool",
        "_tool_blocks",
    )

    def __init__(self, model: str) -> None:
        self._model = model
        self._index = -1
        self._kind = 0
        # Contract tool-call index of the open tool_use block, else -1.
        self._tool = -1
        # Contract tool-call index → Anthropic block index, for calls already sent.
        self._tool_blocks: dict[int, int] = {}
        # Calls held back while another tool block is open: index → ([id, name], fragments).
        self._held: dict[int, tuple[list[str], list[str]]] = {}
        self._has_tools = False
        # `event: content_block_delta` up to the delta type for the open block: text deltas
        # are most of a stream, so they are built from bytes instead of a dict each.
        self._head = b""

    def encode(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        """The SSE bytes for one frame (possibly several events, possibly none)."""
        kind = frame.WhichOneof("frame")
        if kind == "text":
            text = frame.text.text
            if not text:
                return b""
            head = b"" if self._kind == _TEXT else self._open(_TEXT, {"type": "text", "text": ""})
            return head + self._head + b'"text_delta","text":' + orjson.dumps(text) + b"}}\n\n"
        if kind == "tool_call":
            return self._tool_call(frame.tool_call)
        if kind == "reasoning":
            return self._reasoning(frame.reasoning)
        if kind == "start":
            return self.start(frame.start)
        if kind == "end":
            return self.end(frame.end)
        return b""

    def start(self, start: chat_pb2.StreamStart) -> bytes:
        """``message_start``; input usage is not known yet and arrives in ``message_delta``."""
        message: Json = {
            "id": message_id(start.id),
            "type": "message",
            "role": "assistant",
            "model": start.model or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        """Closes the open block, then ``message_delta`` (stop reason, final usage), stop."""
        out = self._close()
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(end.finish_reason, self._has_tools),
                "stop_sequence": None,
            },
            "usage": usage_json(end.usage),
        }
        return out + sse_event("message_delta", delta) + MESSAGE_STOP

    def _tool_call(self, delta: chat_pb2.ToolCallDelta) -> bytes:
        self._has_tools = True
        index = delta.index
        if index == self._tool:
            return self._arguments(self._index, delta.arguments)
        held = self._held.get(index)
        if held is not None:
            held[0][0] = held[0][0] or delta.id
            held[0][1] = held[0][1] or delta.name
            held[1].append(delta.arguments)
            return b""
        block = self._tool_blocks.get(index)
        if block is not None:
            # Only after held calls were flushed by a text or thinking block in between; the
            # fragment goes on the call's own index, where every SDK accumulates it.
            return self._arguments(block, delta.arguments)
        if self._kind == _TOOL:
            self._held[index] = ([delta.id, delta.name], [delta.arguments])
            return b""
        out = self._open(_TOOL, _tool_block(delta.id, delta.name))
        self._tool = index
        self._tool_blocks[index] = self._index
        return out + self._arguments(self._index, delta.arguments)

    def _arguments(self, block: int, fragment: str) -> bytes:
        if not fragment:
            return b""
        live = block == self._index and self._kind == _TOOL
        head = self._head if live else _delta_head(block)
        return head + b'"input_json_delta","partial_json":' + orjson.dumps(fragment) + b"}}\n\n"

    def _reasoning(self, delta: chat_pb2.ReasoningDelta) -> bytes:
        if delta.redacted_data:
            # A redacted block is complete in one frame: start and stop it at once.
            out = self._open(_THINKING, {"type": "redacted_thinking", "data": delta.redacted_data})
            return out + self._close()
        if not delta.text and not delta.signature:
            return b""
        out = b""
        if self._kind != _THINKING:
            out = self._open(_THINKING, {"type": "thinking", "thinking": "", "signature": ""})
        if delta.text:
            out += self._delta({"type": "thinking_delta", "thinking": delta.text})
        if delta.signature:
            out += self._delta({"type": "signature_delta", "signature": delta.signature})
        return out

    def _open(self, kind: int, block: Json) -> bytes:
        out = self._close()
        self._index += 1
        self._kind = kind
        self._head = _delta_head(self._index)
        return out + _block_start(self._index, block)

    def _close(self) -> bytes:
        """Stops the open block, then sends every held-back tool call as a whole block."""
        if not self._kind:
            return b""
        out = _block_stop(self._index)
        self._kind = 0
        self._tool = -1
        for index, ((call_id, name), fragments) in self._held.items():
            self._index += 1
            self._tool_blocks[index] = self._index
            out += _block_start(self._index, _tool_block(call_id, name))
            out += self._arguments(self._index, "".join(fragments))
            out += _block_stop(self._index)
        self._held.clear()
        return out

    def _delta(self, delta: Json) -> bytes:
        return sse_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )


def _delta_head(index: int) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
        + str(index).encode()
        + b',"delta":{"type":'
    )


def _tool_block(call_id: str, name: str) -> Json:
    return tool_use_json(tool_use_id(call_id), name, {})


def _block_start(index: int, block: Json) -> bytes:
    return sse_event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _block_stop(index: int) -> bytes:
    return sse_event("content_block_stop", {"type": "content_block_stop", "index": index})


def stream_error_event(status: int, message: str) -> bytes:
    """An in-stream ``error`` event (after a 200 has gone out)."""
    return sse_event("error", error_json(status, message))
