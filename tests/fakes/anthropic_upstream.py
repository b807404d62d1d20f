"""A fake Anthropic Messages API upstream: a real aiohttp server on 127.0.0.1 (port 0).

Usage::

    async with FakeAnthropic() as up:
        up.base_url                      # 'http://127.0.0.1:PORT' (the SDK appends /v1/messages)
        up.script(Status(529), Status(429, headers={"retry-after": "1"}), Reply(text="hi"))
        ...                              # point AnthropicProvider / anthropic SDK at up.base_url
        up.requests[0].json["messages"]  # every request is recorded (.json .headers .path)

Endpoints: ``POST /v1/messages`` (streamed when ``stream: true``) and
``POST /v1/messages/count_tokens`` (``{"input_tokens": <prompt words>}``, never scripted).
Anything else answers 404 in
Anthropic's error shape ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

Default answer (nothing scripted): text ``default_reply_text(body)`` = ``"Fake reply to: <last
user text>"``; usage ``input_tokens`` + cache read + cache creation = words in every text of the
request (system included), where the cache read/creation come from the constructor's
``cached_tokens`` / ``cache_write_tokens`` (capped), ``output_tokens`` = words produced. It
honours ``max_tokens`` (truncates to that many words, stop_reason ``max_tokens``). When the
request forces a tool (``tool_choice: {"type": "tool", "name": N}``) the default answer calls N
with ``{"answer": <default text>}``; when it asks for native structured output
(``output_config.format``) the default text is ``{"answer": <default text>}``.

Streams follow the real event sequence: ``message_start`` (usage with input and cache counts,
``output_tokens: 1``), per content block ``content_block_start`` / ``content_block_delta`` /
``content_block_stop`` (thinking: ``thinking_delta`` pieces then one ``signature_delta``; text:
``text_delta`` per word; tool use: an empty first ``input_json_delta`` then fragments of 7
characters), a ``ping`` after the first block starts, ``message_delta`` (stop_reason, usage)
and ``message_stop``. Every event has its ``event:`` line.

Scripting: ``up.script(*behaviours)`` queues behaviours; each request takes the next (FIFO) and
falls back to ``up.default`` (None = the canned reply) when the queue is empty.

- ``Reply(text=, tool_calls=[ToolCall(name, arguments, id)], usage=Usage(...) or a dict sent
  verbatim, stop_reason= (wire value: end_turn, max_tokens, tool_use, refusal...), thinking=,
  signature=, redacted_thinking=, model=, chunk_delay= seconds between events, headers=)``
- ``Status(status, message=, headers=, code=<error type>, body=)``: error in Anthropic's shape;
  the type follows the status (429 rate_limit_error, 529 overloaded_error, ...).
- ``StreamError(message, after_chunks=1, type="overloaded_error")``: a 200 stream that sends
  ``event: error`` after ``after_chunks`` events following ``message_start``, then ends.
- ``Json``, ``Raw``, ``Delay``, ``Stall``, ``CutStream``, ``Disconnect``: see tests.fakes.common.

``FakeAnthropic(api_key="sk-ant-...")`` rejects requests whose ``x-api-key`` (or, as recent
anthropic SDKs send it, ``Authorization: Bearer``) differs, with 401 ``authentication_error``.
``up.cancelled`` counts handlers cancelled because the client went away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import (
    CutStream,
    Delay,
    Disconnect,
    FakeUpstream,
    Json,
    Raw,
    RecordedRequest,
    Stall,
    Status,
    ToolCall,
    pieces,
    reply_to,
    scripted_calls,
    scripted_usage,
    split_fragments,
    sse,
    truncate,
    words,
)

__all__ = [
    "CutStream",
    "Delay",
    "Disconnect",
    "FakeAnthropic",
    "Json",
    "Raw",
    "RecordedRequest",
    "Reply",
    "Stall",
    "Status",
    "StreamError",
    "ToolCall",
    "Usage",
    "default_reply_text",
    "prompt_words",
]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Usage:
    """Anthropic usage: ``input_tokens`` excludes the cache read and cache creation counts."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": self.output_tokens,
            "service_tier": "standard",
        }


@dataclass(frozen=True)
class Reply:
    """A message. ``text=None`` with no tool calls means the default reply."""

    text: str | None = None
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    usage: Usage | Mapping[str, Any] | None = None
    stop_reason: str | None = None
    thinking: str | None = None
    signature: str = "fake-signature"
    redacted_thinking: str | None = None
    model: str | None = None
    chunk_delay: float = 0.0
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class StreamError:
    """A 200 stream that carries an ``error`` event after ``after_chunks`` events."""

    message: str
    after_chunks: int = 1
    type: str = "overloaded_error"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    out.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    out.append(_text_of(block.get("content")))
        return " ".join(out)
    return ""


def prompt_words(body: Any) -> int:
    """The fake's prompt size: words in the system prompt and every message (at least 1)."""
    if not isinstance(body, dict):
        return 1
    count = len(words(_text_of(body.get("system"))))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            count += len(words(_text_of(message.get("content"))))
    return max(count, 1)


def default_reply_text(body: Any) -> str:
    """``Fake reply to: <last user text>`` for a request body."""
    last = ""
    for message in (body.get("messages") or ()) if isinstance(body, dict) else ():
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content"))
            if text:
                last = text
    return reply_to(last)


class FakeAnthropic(FakeUpstream):
    """The fake Anthropic upstream (see the module docstring for its API)."""

    def __init__(
        self,
        *,
        default: Any = None,
        api_key: str | None = None,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> None:
        super().__init__(default=default, api_key=api_key, cached_tokens=cached_tokens)
        self.cache_write_tokens = cache_write_tokens

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        # Anthropic's count endpoint: {"input_tokens": N}; the fake counts prompt words.
        recorded = await self.record(request)
        return web.json_response({"input_tokens": prompt_words(recorded.json)})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        given = request.headers.get("x-api-key") or bearer
        if self.api_key is not None and given != self.api_key:
            return web.json_response(self.error_body(401, "invalid x-api-key", None), status=401)
        return await self.serve(request, recorded)

    async def perform(
        self, behaviour: Any, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        if isinstance(behaviour, StreamError):
            error = {
                "type": "error",
                "error": {"type": behaviour.type, "message": behaviour.message},
            }
            if not self.is_stream(recorded):
                status = {v: k for k, v in ERROR_TYPES.items()}.get(behaviour.type, 500)
                return web.json_response(error, status=status)
            events = self.reply_events(self.default_reply(recorded), recorded)
            return await self.stream_events(
                request, [*events[: 1 + behaviour.after_chunks], _event(error)]
            )
        return await super().perform(behaviour, request, recorded)

    # --- rendering ----------------------------------------------------------------------------

    def default_reply(self, recorded: RecordedRequest) -> Reply:
        return Reply()

    def error_body(self, status: int, message: str | None, code: str | None) -> Any:
        return {
            "type": "error",
            "error": {
                "type": code or ERROR_TYPES.get(status, "api_error"),
                "message": message or f"Fake upstream error {status}",
            },
            "request_id": "req_fake",
        }

    def _resolve(self, reply: Reply, recorded: RecordedRequest) -> dict[str, Any]:
        """The reply's concrete content blocks, stop reason and usage."""
        served = self.next_number()
        body = recorded.json if isinstance(recorded.json, dict) else {}
        calls = scripted_calls(reply.tool_calls, f"toolu_fake_{served}")
        text = reply.text
        stop = reply.stop_reason
        if text is None and not calls:
            text, cut = truncate(default_reply_text(body), body.get("max_tokens"))
            if cut:
                stop = stop or "max_tokens"
            choice = body.get("tool_choice")
            if isinstance(choice, dict) and choice.get("type") == "tool":
                arguments = orjson.dumps({"answer": text}).decode()
                calls.append(
                    {
                        "id": f"toolu_fake_{served}_0",
                        "name": choice["name"],
                        "arguments": arguments,
                    }
                )
                text = None
            elif isinstance(body.get("output_config"), dict):
                text = orjson.dumps({"answer": text}).decode()
        if stop is None:
            stop = "tool_use" if calls else "end_turn"
        blocks: list[dict[str, Any]] = []
        if reply.thinking is not None:
            blocks.append(
                {"type": "thinking", "thinking": reply.thinking, "signature": reply.signature}
            )
        if reply.redacted_thinking is not None:
            blocks.append({"type": "redacted_thinking", "data": reply.redacted_thinking})
        if text:
            blocks.append({"type": "text", "text": text})
        for call in calls:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["name"],
                    "input": orjson.loads(call["arguments"] or "{}"),
                    "_arguments": call["arguments"],
                }
            )
        usage = scripted_usage(reply.usage)
        if usage is None:
            prompt = prompt_words(body)
            read = min(self.cached_tokens, prompt)
            write = min(self.cache_write_tokens, prompt - read)
            produced = len(words(text or "")) + len(words(reply.thinking or ""))
            produced += sum(len(words(c["arguments"])) for c in calls)
            usage = Usage(prompt - read - write, produced, read, write).to_json()
        return {
            "id": f"msg_fake{served}",
            "model": reply.model or body.get("model") or "claude-fake",
            "blocks": blocks,
            "stop": stop,
            "usage": usage,
        }

    def reply_body(self, reply: Any, recorded: RecordedRequest) -> tuple[int, Any]:
        resolved = self._resolve(reply, recorded)
        content = [{k: v for k, v in b.items() if k != "_arguments"} for b in resolved["blocks"]]
        return 200, {
            "id": resolved["id"],
            "type": "message",
            "role": "assistant",
            "model": resolved["model"],
            "content": content,
            "stop_reason": resolved["stop"],
            "stop_sequence": None,
            "usage": resolved["usage"],
        }

    def reply_events(self, reply: Any, recorded: RecordedRequest) -> list[bytes]:
        resolved = self._resolve(reply, recorded)
        usage = dict(resolved["usage"])
        start_usage = {**usage, "output_tokens": 1}
        events = [
            _event(
                {
                    "type": "message_start",
                    "message": {
                        "id": resolved["id"],
                        "type": "message",
                        "role": "assistant",
                        "model": resolved["model"],
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        for index, block in enumerate(resolved["blocks"]):
            kind = block["type"]
            start: dict[str, Any]
            deltas: list[dict[str, Any]]
            if kind == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [
                    {"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])
                ]
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
            elif kind == "redacted_thinking":
                start, deltas = dict(block), []
            elif kind == "text":
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": ""}]
                deltas += [
                    {"type": "input_json_delta", "partial_json": f}
                    for f in split_fragments(block["_arguments"], 7)
                    if f
                ]
            events.append(
                _event({"type": "content_block_start", "index": index, "content_block": start})
            )
            if index == 0:
                events.append(_event({"type": "ping"}))
            for delta in deltas:
                events.append(
                    _event({"type": "content_block_delta", "index": index, "delta": delta})
                )
            events.append(_event({"type": "content_block_stop", "index": index}))
        events.append(
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": resolved["stop"], "stop_sequence": None},
                    "usage": {
                        k: v
                        for k, v in usage.items()
                        if k
                        in (
                            "input_tokens",
                            "cache_creation_input_tokens",
                            "cache_read_input_tokens",
                            "output_tokens",
                        )
                    },
                },
            )
        )
        events.append(_event({"type": "message_stop"}))
        return events


def _event(payload: dict[str, Any]) -> bytes:
    # Anthropic names every event after its payload's type.
    return sse(payload, event=payload["type"])
