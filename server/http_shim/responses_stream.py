"""``switchboard.v1`` stream frames → OpenAI Responses API server-sent events.

Mirrors the typed event sequence of OpenAI's own streams (see the recordings in
``../shared/fixtures/provider-wire/openai-responses``): each event is ``event: <type>`` plus
``data: <json>`` whose ``type`` repeats it and whose ``sequence_number`` counts from 0; no
``[DONE]``. ``response.created`` and ``response.in_progress`` open the stream; then per output
item ``response.output_item.added``, its deltas and ``response.output_item.done``:

- a message: ``response.content_part.added``, ``response.output_text.delta``s,
  ``response.output_text.done``, ``response.content_part.done``;
- reasoning: ``response.reasoning_summary_part.added``, ``…reasoning_summary_text.delta``s,
  ``…text.done``, ``…part.done`` (a signature or redacted block goes into the item's
  ``encrypted_content`` at ``output_item.done``);
- a function call: ``response.function_call_arguments.delta``s and ``….done``.

One item is open at a time, as in OpenAI's streams; a tool call that starts while another is
open (an upstream interleaving parallel calls) is held back and sent whole when the open one is
done. The stream ends with ``response.completed`` (``response.incomplete`` when cut by the length
limit or a content filter) carrying the whole response and its usage. A failure after the first
event is an ``error`` event followed by ``response.failed``: never a truncated "completed".
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import GatewayError
from server.http_shim.openai_errors import error_object
from server.http_shim.responses_convert import (
    Json,
    encrypted_content,
    function_call_item,
    message_item,
    reasoning_item,
    response_id_of,
    response_json,
    status_of,
    text_part,
    usage_json,
)

_TEXT, _REASONING, _TOOL = 1, 2, 3


class ResponsesStream:
    """Encodes one stream (implements ``endpoint.StreamEncoder``)."""

    __slots__ = (
        "_args",
        "_call",
        "_created",
        "_held",
        "_item",
        "_kind",
        "_reasoning",
        "_request",
        "_seq",
        "_text",
        "items",
        "response_id",
    )

    def __init__(self, request: chat_pb2.ChatRequest, start: chat_pb2.StreamStart) -> None:
        self._request = request
        self.response_id = response_id_of(start.response_id, start.id)
        self._created = start.created
        self._seq = 0
        # Output items so far, in output order (the open one is the last).
        self.items: list[Json] = []
        self._kind = 0
        self._item: Json = {}
        self._text: list[str] = []
        self._reasoning = types_pb2.ReasoningPart()
        self._args: list[str] = []
        # Contract index of the open tool call; calls held back: index → (call, fragments).
        self._call = -1
        self._held: dict[int, tuple[types_pb2.ToolCall, list[str]]] = {}

    # --- StreamEncoder ------------------------------------------------------------------------

    def start(self, first: chat_pb2.StreamChatResponse | None) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        snapshot = self._response("in_progress")
        return self._event("response.created", {"response": snapshot}) + self._event(
            "response.in_progress", {"response": snapshot}
        )

    def frame(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        """The events for one text, reasoning or tool-call frame."""
        kind = frame.WhichOneof("frame")
        if kind == "text":
            return self._text_delta(frame.text.text)
        if kind == "tool_call":
            return self._tool_delta(frame.tool_call)
        if kind == "reasoning":
            return self._reasoning_delta(frame.reasoning)
        return b""

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        """Closes the open item, then ``response.completed`` (or ``.incomplete``)."""
        status, incomplete = status_of(end.finish_reason)
        out = self._close(status)
        response = self._response(status, usage_json(end.usage, end.cost), incomplete)
        name = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(name, {"response": response})

    def error(self, exc: GatewayError) -> bytes:
        """An ``error`` event, then ``response.failed``."""
        error = error_object(exc)
        out = self._event("error", {"error": error})
        failed = self._response(
            "failed", error={"code": error["code"], "message": error["message"]}
        )
        return out + self._event("response.failed", {"response": failed})

    # --- items --------------------------------------------------------------------------------

    def _text_delta(self, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if self._kind != _TEXT:
            out = self._close("completed") + self._open(
                _TEXT, message_item(self._id("msg"), [], "in_progress")
            )
            out += self._event(
                "response.content_part.added",
                {**self._where(), "content_index": 0, "part": text_part("")},
            )
        self._text.append(text)
        return out + self._event(
            "response.output_text.delta",
            {**self._where(), "content_index": 0, "delta": text, "logprobs": []},
        )

    def _reasoning_delta(self, delta: chat_pb2.ReasoningDelta) -> bytes:
        if delta.redacted_data:
            part = types_pb2.ReasoningPart(redacted_data=delta.redacted_data)
            item = reasoning_item(self._id("rs"), "", encrypted_content(part))
            out = self._close("completed") + self._open(
                _REASONING, {**item, "status": "in_progress"}
            )
            self._reasoning = part
            return out + self._close("completed")
        if not delta.text and not delta.signature:
            return b""
        out = b""
        if self._kind != _REASONING or self._reasoning.signature:
            item = reasoning_item(self._id("rs"), "", None)
            out = self._close("completed") + self._open(_REASONING, item)
            out += self._event(
                "response.reasoning_summary_part.added",
                {**self._where(), "summary_index": 0, "part": {"type": "summary_text", "text": ""}},
            )
        if delta.text:
            self._text.append(delta.text)
            out += self._event(
                "response.reasoning_summary_text.delta",
                {**self._where(), "summary_index": 0, "delta": delta.text},
            )
        if delta.signature:
            self._reasoning.signature = delta.signature
        return out

    def _tool_delta(self, delta: chat_pb2.ToolCallDelta) -> bytes:
        index = delta.index
        if self._kind == _TOOL and index == self._call:
            return self._arguments(delta.arguments)
        held = self._held.get(index)
        if held is not None:
            call, fragments = held
            call.id = call.id or delta.id
            call.name = call.name or delta.name
            fragments.append(delta.arguments)
            return b""
        call = types_pb2.ToolCall(id=delta.id, name=delta.name, signature=delta.signature)
        if self._kind == _TOOL:
            self._held[index] = (call, [delta.arguments])
            return b""
        return self._start_call(index, call) + self._arguments(delta.arguments)

    def _start_call(self, index: int, call: types_pb2.ToolCall) -> bytes:
        out = self._close("completed")
        self._call = index
        return out + self._open(_TOOL, function_call_item(self._id("fc"), call, "in_progress"))

    def _arguments(self, fragment: str) -> bytes:
        if not fragment:
            return b""
        self._args.append(fragment)
        return self._event(
            "response.function_call_arguments.delta", {**self._where(), "delta": fragment}
        )

    def _open(self, kind: int, item: Json) -> bytes:
        self._kind = kind
        self._item = item
        self.items.append(item)
        return self._event(
            "response.output_item.added", {"output_index": len(self.items) - 1, "item": dict(item)}
        )

    def _close(self, status: str) -> bytes:
        """Finishes the open item (then sends every held-back call whole)."""
        kind = self._kind
        if not kind:
            return b""
        item = self._item
        where = self._where()
        out = b""
        if kind == _TEXT:
            text = "".join(self._text)
            out += self._event(
                "response.output_text.done",
                {**where, "content_index": 0, "text": text, "logprobs": []},
            )
            out += self._event(
                "response.content_part.done", {**where, "content_index": 0, "part": text_part(text)}
            )
            item["content"] = [text_part(text)]
            item["status"] = status
        elif kind == _REASONING:
            text = "".join(self._text)
            if not self._reasoning.redacted_data:
                summary = {"type": "summary_text", "text": text}
                out += self._event(
                    "response.reasoning_summary_text.done",
                    {**where, "summary_index": 0, "text": text},
                )
                out += self._event(
                    "response.reasoning_summary_part.done",
                    {**where, "summary_index": 0, "part": summary},
                )
            self._reasoning.text = text
            item.update(reasoning_item(item["id"], text, encrypted_content(self._reasoning)))
        else:
            arguments = "".join(self._args)
            out += self._event(
                "response.function_call_arguments.done", {**where, "arguments": arguments}
            )
            item["arguments"] = arguments
            item["status"] = "completed"
        out += self._event(
            "response.output_item.done", {"output_index": where["output_index"], "item": item}
        )
        self._kind = 0
        self._text = []
        self._args = []
        self._reasoning = types_pb2.ReasoningPart()
        self._call = -1
        held, self._held = self._held, {}
        for index, (call, fragments) in held.items():
            out += self._start_call(index, call) + self._arguments("".join(fragments))
            out += self._close(status)
        return out

    # --- framing ------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.response_id.removeprefix('resp_')}{len(self.items):03d}"

    def _where(self) -> Json:
        return {"item_id": self._item["id"], "output_index": len(self.items) - 1}

    def _response(
        self,
        status: str,
        usage: Json | None = None,
        incomplete: Json | None = None,
        error: Json | None = None,
    ) -> Json:
        return response_json(
            self._request,
            response_id=self.response_id,
            created=self._created,
            status=status,
            output=list(self.items) if status != "in_progress" else [],
            usage=usage,
            incomplete=incomplete,
            error=error,
        )

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": name, **payload, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
