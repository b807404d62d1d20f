"""Anthropic Messages SSE events → ``switchboard.v1.StreamChatResponse`` frames.

Events: ``message_start`` (input usage), ``content_block_start`` / ``_delta`` / ``_stop`` for
text (``text_delta``), tool use (``input_json_delta``, whose first fragment is often empty) and
thinking (``thinking_delta``, ``signature_delta``), ``message_delta`` (stop reason, final usage),
``message_stop``, ``ping`` and ``error``. Tool-call frames are indexed by the call's position
among the turn's tool calls (not Anthropic's block index); the first frame of a call carries its
id and name. Unknown event and delta types are ignored, as Anthropic's versioning policy asks.
"""

from __future__ import annotations

from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UpstreamError, UpstreamStreamError
from server.providers.anthropic.codec import fill_usage, finish_reason
from server.providers.anthropic.errors import error_for_type

Frame = chat_pb2.StreamChatResponse


class StreamDecoder:
    """Turns one stream's events into frames; ``end()`` gives the final frame."""

    __slots__ = (
        "_blocks",
        "_calls",
        "_json_tool",
        "_provider",
        "_stop_reason",
        "done",
        "usage",
    )

    def __init__(
        self, provider: str, json_tool: str | None = None, usage: types_pb2.Usage | None = None
    ) -> None:
        self._provider = provider
        self._json_tool = json_tool
        # Anthropic block index → ("text"|"tool"|"json"|"thinking"|"other", tool-call index).
        self._blocks: dict[int, tuple[str, int]] = {}
        self._calls = 0
        self._stop_reason: str | None = None
        # The usage reported so far (the caller's meter when given: see UpstreamCall.meter).
        self.usage = usage if usage is not None else types_pb2.Usage()
        self.done = False

    def feed(self, event: str, data: dict[str, Any]) -> list[Frame]:
        """Frames for one event (often none); raises the mapped error for an ``error`` event."""
        kind = data.get("type") or event
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._start(data)
        if kind == "message_delta":
            delta = data.get("delta") or {}
            fill_usage(self.usage, data.get("usage") or {})
            if delta.get("stop_reason"):
                # The final usage and the stop reason are in: only message_stop follows, and a
                # stream held open after this is still a complete answer.
                self._stop_reason = delta["stop_reason"]
                self.done = True
        elif kind == "message_start":
            fill_usage(self.usage, (data.get("message") or {}).get("usage") or {})
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise stream_error(self._provider, data.get("error") or {})
        return []

    def end(self) -> Frame:
        """The one ``end`` frame; raises when the stream stopped before ``message_stop``."""
        if not self.done:
            raise UpstreamStreamError(
                "The Anthropic stream ended before message_stop.", provider=self._provider
            )
        frame = Frame()
        frame.end.finish_reason = finish_reason(  # type: ignore[assignment]
            self._stop_reason, json_tool=self._json_tool is not None
        )
        frame.end.usage.CopyFrom(self.usage)
        return frame

    def _start(self, data: dict[str, Any]) -> list[Frame]:
        index = int(data.get("index", 0))
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = ("text", -1)
            text = block.get("text") or ""
            return [_text(text)] if text else []
        if kind == "tool_use":
            if self._json_tool is not None and block.get("name") == self._json_tool:
                self._blocks[index] = ("json", -1)
                return []
            call = self._calls
            self._calls += 1
            self._blocks[index] = ("tool", call)
            frame = Frame()
            delta = frame.tool_call
            delta.index = call
            delta.id = block.get("id") or ""
            delta.name = block.get("name") or ""
            return [frame]
        if kind == "thinking":
            self._blocks[index] = ("thinking", -1)
            frames = []
            if block.get("thinking"):
                frames.append(_reasoning(text=block["thinking"]))
            if block.get("signature"):
                frames.append(_reasoning(signature=block["signature"]))
            return frames
        if kind == "redacted_thinking":
            # Arrives whole in its start event; it must go back unchanged on the next turn.
            self._blocks[index] = ("other", -1)
            redacted = block.get("data")
            if not redacted:
                return []
            frame = Frame()
            frame.reasoning.redacted_data = str(redacted)
            return [frame]
        # Server tool blocks are never enabled by this adapter.
        self._blocks[index] = ("other", -1)
        return []

    def _delta(self, data: dict[str, Any]) -> list[Frame]:
        kind, call = self._blocks.get(int(data.get("index", 0)), ("other", -1))
        delta = data.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text") or ""
            return [_text(text)] if text and kind == "text" else []
        if dtype == "input_json_delta":
            fragment = delta.get("partial_json") or ""
            if not fragment:
                return []
            if kind == "json":
                return [_text(fragment)]
            if kind == "tool":
                frame = Frame()
                frame.tool_call.index = call
                frame.tool_call.arguments = fragment
                return [frame]
            return []
        if dtype == "thinking_delta" and delta.get("thinking"):
            return [_reasoning(text=delta["thinking"])]
        if dtype == "signature_delta" and delta.get("signature"):
            return [_reasoning(signature=delta["signature"])]
        return []


def _text(text: str) -> Frame:
    frame = Frame()
    frame.text.text = text
    return frame


def _reasoning(text: str = "", signature: str = "") -> Frame:
    frame = Frame()
    frame.reasoning.text = text
    frame.reasoning.signature = signature
    return frame


def stream_error(provider: str, error: dict[str, Any]) -> UpstreamError:
    """The gateway error for an in-stream ``error`` event (by Anthropic error type)."""
    return error_for_type(str(error.get("type") or ""), str(error.get("message") or ""), provider)
