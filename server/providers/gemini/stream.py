"""Gemini ``streamGenerateContent?alt=sse`` chunks → ``switchboard.v1.StreamChatResponse``.

Each SSE event is a whole ``GenerateContentResponse`` holding the next parts. Text becomes text
frames, thought parts reasoning frames, a ``thoughtSignature`` (often on a last, empty text
part) a signature-only reasoning frame, and each ``functionCall`` part one complete tool-call
frame (Gemini does not split arguments) with the next index. Every chunk repeats the usage so
far; the last one wins. Gemini has no end event: a stream is complete once a chunk carried a
``finishReason`` (or a blocked prompt), and one that closes before that is a broken stream.
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UpstreamStreamError
from server.providers.codec import new_call_id
from server.providers.gemini.decode import fill_usage, finish_reason
from server.providers.gemini.errors import error_from_body

Frame = chat_pb2.StreamChatResponse


class StreamDecoder:
    """Turns one stream's chunks into frames; ``end()`` gives the final frame."""

    __slots__ = ("_calls", "_finish", "_provider", "usage")

    def __init__(self, provider: str, usage: types_pb2.Usage | None = None) -> None:
        self._provider = provider
        self._calls = 0
        self._finish: int | None = None
        # The usage reported so far (the caller's meter when given: see UpstreamCall.meter).
        self.usage = usage if usage is not None else types_pb2.Usage()

    @property
    def done(self) -> bool:
        """True once a chunk said why the model stopped."""
        return self._finish is not None

    def feed(self, chunk: dict[str, Any]) -> list[Frame]:
        """Frames for one chunk; raises the mapped error for an in-stream ``error`` object."""
        if "error" in chunk:
            raise error_from_body(chunk, 0, {}, self._provider, in_stream=True)
        meta = chunk.get("usageMetadata")
        if meta:
            fill_usage(self.usage, meta)
        candidates = chunk.get("candidates") or []
        if not candidates:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                self._finish = types_pb2.FINISH_REASON_CONTENT_FILTER
            return []
        candidate = candidates[0]
        frames: list[Frame] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            signature = part.get("thoughtSignature") or ""
            call = part.get("functionCall")
            if call is not None:
                frame = Frame()
                delta = frame.tool_call
                delta.index = self._calls
                self._calls += 1
                delta.id = call.get("id") or new_call_id()
                delta.name = call.get("name") or ""
                delta.arguments = orjson.dumps(call.get("args") or {}).decode()
                delta.signature = signature
                frames.append(frame)
                continue
            text = part.get("text") or ""
            if part.get("thought"):
                if text or signature:
                    frame = Frame()
                    frame.reasoning.text = text
                    frame.reasoning.signature = signature
                    frames.append(frame)
                continue
            if text:
                frame = Frame()
                frame.text.text = text
                frames.append(frame)
            if signature:
                frame = Frame()
                frame.reasoning.signature = signature
                frames.append(frame)
        raw = candidate.get("finishReason")
        if raw:
            self._finish = finish_reason(raw, has_calls=self._calls > 0)
        return frames

    def end(self) -> Frame:
        """The one ``end`` frame; raises when no chunk carried a finish reason."""
        if self._finish is None:
            raise UpstreamStreamError(
                "The Gemini stream ended without a finish reason.", provider=self._provider
            )
        frame = Frame()
        frame.end.finish_reason = self._finish  # type: ignore[assignment]
        frame.end.usage.CopyFrom(self.usage)
        return frame
