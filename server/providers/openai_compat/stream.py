"""OpenAI Chat Completions SSE stream → ``switchboard.v1.StreamChatResponse`` frames.

Mirrors openai-python's ``SSEDecoder`` for the framing and the ``chat.completion.chunk`` schema
for the content, with what OpenAI-compatible upstreams add: comment keep-alives
(``: OPENROUTER PROCESSING``), a usage-only last chunk with ``choices: []``, ``usage: null`` on
every other chunk, Groq's ``x_groq.usage``, ``reasoning_content``/``reasoning`` deltas, and an
``error`` object inside a 200 stream (OpenRouter), which becomes ``UpstreamStreamError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from switchboard.v1 import chat_pb2

from server.core.errors import UpstreamStreamError
from server.providers.http import safe_message
from server.providers.openai_compat.decode import (
    arguments_text,
    content_parts,
    decode_usage,
    error_fields,
    finish_reason,
    new_call_id,
    reasoning_text,
)

DONE = b"[DONE]"


class SSEParser:
    """Incremental ``text/event-stream`` parser yielding each event's (event, data) pair
    (WHATWG server-sent events; openai-python ``SSEDecoder``)."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """Events completed by ``chunk``."""
        self._buffer += chunk
        if b"\n" not in chunk:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        return self._lines(lines)

    def flush(self) -> list[tuple[bytes, bytes]]:
        """At end of body: an event that lacked its closing blank line still counts, since
        some servers end with ``data: [DONE]`` and no blank line."""
        lines = [self._buffer] if self._buffer else []
        self._buffer = b""
        lines.append(b"")
        return self._lines(lines)

    def _lines(self, lines: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
        events: list[tuple[bytes, bytes]] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append((self._event, b"\n".join(self._data)))
                self._data = []
                self._event = b""
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value
        return events


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    named: bool


class StreamDecoder:
    """Turns the data of each SSE event into frames and keeps what the ``end`` frame needs."""

    def __init__(self, provider: str, secrets: tuple[str, ...] = ()) -> None:
        self.provider = provider
        self._secrets = secrets
        self.done = False  # saw data: [DONE]
        self.finish: object = None
        self.usage: object = None
        self._calls: dict[int, _Call] = {}
        self._last: _Call | None = None
        self._count = 0

    @property
    def complete(self) -> bool:
        """Whether the stream reached a proper end (a finish reason or ``[DONE]``)."""
        return self.done or self.finish is not None

    def decode(self, event: bytes, data: bytes) -> list[chat_pb2.StreamChatResponse]:
        """Frames for one SSE event; raises UpstreamStreamError on an error event."""
        if data == DONE:
            self.done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamStreamError(
                "upstream sent a malformed stream chunk", provider=self.provider, status=200
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamStreamError(
                "upstream sent a malformed stream chunk", provider=self.provider, status=200
            )
        if chunk.get("error") or event == b"error":
            message, _ = error_fields(chunk)
            raise UpstreamStreamError(
                safe_message(message, self._secrets) or "upstream reported an error mid-stream",
                provider=self.provider,
                status=200,
            )
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        else:
            groq = chunk.get("x_groq")
            if isinstance(groq, dict) and groq.get("usage"):
                self.usage = groq["usage"]
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return []
        frames: list[chat_pb2.StreamChatResponse] = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, frames)
            reason = choice.get("finish_reason")
            if reason:
                self.finish = reason
        return frames

    def _delta(self, delta: dict[str, object], frames: list[chat_pb2.StreamChatResponse]) -> None:
        text, thought = content_parts(delta.get("content"))
        thought = reasoning_text(delta) or thought
        if thought:
            frames.append(
                chat_pb2.StreamChatResponse(reasoning=chat_pb2.ReasoningDelta(text=thought))
            )
        if text:
            frames.append(chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=text)))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    frame = self._tool_call(call)
                    if frame is not None:
                        frames.append(frame)
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            frame = self._tool_call({"index": 0, "function": legacy})
            if frame is not None:
                frames.append(frame)

    def _tool_call(self, call: dict[str, object]) -> chat_pb2.StreamChatResponse | None:
        function = call.get("function")
        fn: dict[str, object] = function if isinstance(function, dict) else {}
        raw_id = call.get("id")
        call_id = raw_id if isinstance(raw_id, str) else ""
        raw_name = fn.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        arguments = arguments_text(fn.get("arguments"))
        upstream_index = call.get("index")
        if isinstance(upstream_index, int):
            state = self._calls.get(upstream_index)
            # Some servers send every call whole under index 0 with distinct ids.
            if state is not None and call_id and call_id != state.id:
                state = None
        else:
            # Without an index, a new id or a second name starts the next call.
            state = self._last
            if state is not None and (
                (call_id and call_id != state.id) or (name and state.named and not call_id)
            ):
                state = None
            upstream_index = -1 - self._count
        if state is None:
            state = _Call(self._count, call_id or new_call_id(), bool(name))
            self._count += 1
            self._calls[upstream_index] = state
            self._last = state
            return chat_pb2.StreamChatResponse(
                tool_call=chat_pb2.ToolCallDelta(
                    index=state.index, id=state.id, name=name, arguments=arguments
                )
            )
        self._last = state
        if name and not state.named:
            state.named = True
        else:
            name = ""
        if not arguments and not name:
            return None
        return chat_pb2.StreamChatResponse(
            tool_call=chat_pb2.ToolCallDelta(index=state.index, name=name, arguments=arguments)
        )

    def end_frame(self) -> chat_pb2.StreamChatResponse:
        """The one final frame: finish reason and usage."""
        reason = finish_reason(self.finish, self._count > 0)
        return chat_pb2.StreamChatResponse(
            end=chat_pb2.StreamEnd(finish_reason=reason, usage=decode_usage(self.usage))
        )
