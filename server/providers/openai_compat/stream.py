"""OpenAI Chat Completions SSE stream → ``switchboard.v1.StreamChatResponse`` frames.

Decodes the events ``server.providers.sse`` parses (which drops comment keep-alives such as
``: OPENROUTER PROCESSING``) after the ``chat.completion.chunk`` schema, with what
OpenAI-compatible upstreams add: a usage-only last chunk with ``choices: []``, ``usage: null``
on every other chunk, Groq's ``x_groq.usage``, ``reasoning_content``/``reasoning`` deltas, and
an ``error`` object inside a 200 stream (OpenRouter), which becomes ``UpstreamStreamError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UpstreamStreamError
from server.providers.codec import new_call_id
from server.providers.openai_compat.codec import arguments_text, decode_usage, finish_reason
from server.providers.openai_compat.decode import content_parts, reasoning_text
from server.providers.openai_compat.errors import error_fields
from server.providers.upstream_errors import safe_message

DONE = b"[DONE]"


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    named: bool


# The delta keys that make a chunk more than a piece of text.
_PLAIN_TEXT = frozenset(("reasoning_content", "reasoning", "tool_calls", "function_call"))


def _text_frame(text: str) -> chat_pb2.StreamChatResponse:
    # Field assignment: building the nested message from keyword arguments costs twice as much.
    frame = chat_pb2.StreamChatResponse()
    frame.text.text = text
    return frame


class StreamDecoder:
    """Turns the data of each SSE event into frames and keeps what the ``end`` frame needs."""

    def __init__(
        self,
        provider: str,
        secrets: tuple[str, ...] = (),
        meter: types_pb2.Usage | None = None,
    ) -> None:
        self.provider = provider
        self._secrets = secrets
        self._meter = meter
        self.done = False  # saw data: [DONE]
        self.finish: object = None
        self.usage: object = None
        self._calls: dict[int, _Call] = {}
        self._last: _Call | None = None
        self._count = 0

    @property
    def finished(self) -> bool:
        """Nothing more is to come: ``[DONE]``, or a finish reason and the usage after it (a
        stream held open after its usage chunk is still a complete answer)."""
        return self.done or (self.finish is not None and self.usage is not None)

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
        if not usage:
            groq = chunk.get("x_groq")
            usage = groq.get("usage") if isinstance(groq, dict) else None
        if usage:
            self.usage = usage
            if self._meter is not None:
                self._meter.CopyFrom(decode_usage(usage))
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
        content = delta.get("content")
        if type(content) is str and _PLAIN_TEXT.isdisjoint(delta):
            # Nearly every chunk of a stream: a piece of text and nothing else.
            if content:
                frames.append(_text_frame(content))
            return
        text, thought = content_parts(content)
        thought = reasoning_text(delta) or thought
        if thought:
            reasoning = chat_pb2.StreamChatResponse()
            reasoning.reasoning.text = thought
            frames.append(reasoning)
        if text:
            frames.append(_text_frame(text))
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
