"""Stream frames → the assistant ``Message`` a non-streamed ``Chat`` would have returned.

Used wherever a streamed turn has to become conversation history again (the Converse tool
loop). Parts keep the order in which the model produced them, as the adapters' non-streamed
decoders do: consecutive text deltas form one text part; reasoning deltas form one
``ReasoningPart`` until a signature closes it (Anthropic ``signature_delta`` ends a thinking
block), and a signature with no open reasoning part becomes a signature-only part where it
arrived (Gemini's ``thoughtSignature`` on a text part); each tool-call index becomes one
``ToolCall`` part at its first delta, later deltas appending to its arguments. Pieces are kept
as Python lists and joined once, because ``+=`` on a protobuf string field copies it each time.
"""

from __future__ import annotations

import os

from switchboard.v1 import chat_pb2, types_pb2


class _Reasoning:
    __slots__ = ("redacted", "signature", "texts")

    def __init__(self, texts: list[str], signature: str = "", redacted: str = "") -> None:
        self.texts = texts
        self.signature = signature
        self.redacted = redacted


class _Call:
    __slots__ = ("arguments", "id", "index", "name", "signature")

    def __init__(self, delta: chat_pb2.ToolCallDelta) -> None:
        self.index = delta.index
        self.id = delta.id
        self.name = delta.name
        self.arguments = [delta.arguments] if delta.arguments else []
        self.signature = delta.signature


class StreamAccumulator:
    """Folds ``StreamChatResponse`` frames into the turn's assistant message (module docstring)."""

    __slots__ = ("_calls", "_parts", "end", "start")

    def __init__(self) -> None:
        self._parts: list[list[str] | _Reasoning | _Call] = []
        self._calls: dict[int, _Call] = {}
        self.start: chat_pb2.StreamStart | None = None
        self.end: chat_pb2.StreamEnd | None = None

    def add(self, frame: chat_pb2.StreamChatResponse) -> None:
        """Takes one frame (start, text, reasoning, tool_call or end)."""
        kind = frame.WhichOneof("frame")
        if kind == "text":
            text = frame.text.text
            if text:
                last = self._parts[-1] if self._parts else None
                if isinstance(last, list):
                    last.append(text)
                else:
                    self._parts.append([text])
        elif kind == "tool_call":
            self._tool_call(frame.tool_call)
        elif kind == "reasoning":
            delta = frame.reasoning
            if delta.redacted_data:
                # A redacted block is complete in one delta and must go back unchanged.
                self._parts.append(_Reasoning([], redacted=delta.redacted_data))
            else:
                self._reasoning(delta.text, delta.signature)
        elif kind == "end":
            self.end = frame.end
        elif kind == "start":
            self.start = frame.start

    @property
    def finish_reason(self) -> types_pb2.FinishReason:
        """The end frame's finish reason (UNSPECIFIED before it arrived)."""
        if self.end is None:
            return types_pb2.FINISH_REASON_UNSPECIFIED
        return self.end.finish_reason

    def tool_calls(self) -> list[types_pb2.ToolCall]:
        """The complete tool calls, by index (ids are generated for calls that had none)."""
        return [self._tool_call_part(self._calls[i]) for i in sorted(self._calls)]

    def message(self) -> types_pb2.Message:
        """The assistant message: text, reasoning and tool-call parts in the order produced."""
        message = types_pb2.Message(role=types_pb2.ROLE_ASSISTANT)
        content = message.content
        for part in self._parts:
            if isinstance(part, list):
                content.add().text = "".join(part)
            elif isinstance(part, _Reasoning):
                reasoning = content.add().reasoning
                reasoning.text = "".join(part.texts)
                reasoning.signature = part.signature
                reasoning.redacted_data = part.redacted
            else:
                content.add().tool_call.CopyFrom(self._tool_call_part(part))
        return message

    def _tool_call(self, delta: chat_pb2.ToolCallDelta) -> None:
        call = self._calls.get(delta.index)
        if call is None:
            call = self._calls[delta.index] = _Call(delta)
            self._parts.append(call)
            return
        # The first delta of an index carries id and name; some upstreams send them later.
        if delta.id and not call.id:
            call.id = delta.id
        if delta.name and not call.name:
            call.name = delta.name
        if delta.arguments:
            call.arguments.append(delta.arguments)
        if delta.signature:
            call.signature = delta.signature

    def _reasoning(self, text: str, signature: str) -> None:
        last = self._parts[-1] if self._parts else None
        open_part = (
            last
            if isinstance(last, _Reasoning) and not last.signature and not last.redacted
            else None
        )
        if text:
            if open_part is None:
                open_part = _Reasoning([])
                self._parts.append(open_part)
            open_part.texts.append(text)
        if signature:
            if open_part is None:
                self._parts.append(_Reasoning([], signature))
            else:
                open_part.signature = signature

    @staticmethod
    def _tool_call_part(call: _Call) -> types_pb2.ToolCall:
        if not call.id:
            # Results refer back to calls by id, so a call must have one; adapters normally
            # generate it, this covers an upstream that sent none.
            call.id = "call_" + os.urandom(12).hex()
        return types_pb2.ToolCall(
            id=call.id,
            name=call.name,
            arguments="".join(call.arguments),
            signature=call.signature,
        )
