"""A fake OpenAI Chat Completions upstream: a real aiohttp server on 127.0.0.1 (port 0).

Usage::

    async with FakeOpenAI() as up:
        up.base_url                      # 'http://127.0.0.1:PORT/v1'
        up.script(Status(429, headers={"retry-after": "1"}), Reply(text="hi"))
        ...                              # point a client or the adapter at up.base_url
        up.requests[0].json["messages"]  # every request is recorded (.json .headers .path)

Endpoints: ``POST /v1/chat/completions`` (streamed when ``stream: true``), ``POST /v1/embeddings``
and ``GET /v1/models``. Anything else answers 404 in OpenAI's error shape.

Embeddings (nothing scripted, or ``Embeddings()``): one ``fake_vector(text, dimensions or 8)``
per input (token arrays embed their ids' text), as floats or, with ``encoding_format:
base64``, little-endian float32; ``usage.prompt_tokens`` = words in the inputs. Scripted
``Status``/``Json``/``Raw``/``Delay``... answer embedding requests the same way as chat ones.

Default answer (nothing scripted): a deterministic completion whose text is
``default_reply_text(body)`` = ``"Fake reply to: <last user message text>"``, usage
``prompt_tokens`` = words in all message texts, ``completion_tokens`` = words in the reply,
``cached_tokens`` = the ``cached_tokens`` constructor argument (capped at the prompt). It honours
``max_completion_tokens`` / ``max_tokens`` (truncates to that many words, finish ``length``).
Streams look like OpenAI's: a role chunk, one content chunk per word, tool calls (first delta
with id, name and empty arguments, then argument fragments, by index; parallel calls
interleaved unless ``Reply(interleave=False)``), a finish chunk, a usage chunk with
``choices: []`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``. While
include_usage is set every other chunk carries ``usage: null``, as OpenAI's do.

Scripting: ``up.script(*behaviours)`` queues behaviours; each request takes the next (FIFO) and
falls back to ``up.default`` (None = the canned reply) when the queue is empty.

- ``Reply(text=, tool_calls=[ToolCall(name, arguments, id)], usage=Usage(...) or a dict sent
  verbatim, finish_reason=, reasoning= (as DeepSeek ``reasoning_content``), refusal=, model=,
  chunk_delay= seconds between stream chunks, interleave=, headers=)``
- ``Status(code, message=, headers=, code=, body=)``: error in OpenAI's shape (or ``body``).
- ``StreamError(message, after_chunks=1, code=400)``: a 200 stream whose chunk carries an
  ``error`` object (OpenRouter), then ``[DONE]``; a 200 JSON error body when not streamed.
- ``Json(body, status=200)``, ``Raw(bytes, status=200, content_type=)``: verbatim answers.
- ``Delay(seconds, then=behaviour)``, ``Stall()`` (never answers; ``Stall(after_chunks=n)``
  stalls mid-stream), ``CutStream(after_chunks=2)`` (drops the connection mid-stream),
  ``Disconnect()`` (drops it before answering).

``FakeOpenAI(api_key="sk-...")`` rejects other keys with 401 and, like OpenAI, echoes the key
it received in the message (so redaction can be tested). ``up.cancelled`` counts handlers
cancelled because the client went away; ``await up.wait_for_requests(n)`` waits for arrivals.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    fake_vector,
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
    "Embeddings",
    "FakeOpenAI",
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

CREATED = 1_700_000_000
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Usage:
    """Token counts the fake reports (OpenAI ``CompletionUsage``)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        prompt_details: dict[str, Any] = {"cached_tokens": self.cached_tokens, "audio_tokens": 0}
        if self.cache_write_tokens is not None:
            prompt_details["cache_write_tokens"] = self.cache_write_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


@dataclass(frozen=True)
class Reply:
    """A completion. ``text=None`` with no tool calls means the default reply text."""

    text: str | None = None
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    usage: Usage | Mapping[str, Any] | None = None
    finish_reason: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    model: str | None = None
    chunk_delay: float = 0.0
    interleave: bool = True
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Embeddings:
    """The default embeddings answer, scripted explicitly (e.g. after a ``Status``)."""


@dataclass(frozen=True)
class StreamError:
    """A 200 stream that carries an ``error`` object after ``after_chunks`` content chunks."""

    message: str
    after_chunks: int = 1
    code: Any = 400


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def prompt_words(body: Any) -> int:
    """The fake's prompt token count: words in every message's text (at least 1)."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    count = 0
    for message in messages:
        if isinstance(message, dict):
            count += len(words(_text_of(message.get("content"))))
    return max(count, 1)


def default_reply_text(body: Any) -> str:
    """The default reply text for a request body: ``Fake reply to: <last user text>``."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    last = ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            last = _text_of(message.get("content"))
    return reply_to(last)


class FakeOpenAI(FakeUpstream):
    """The fake OpenAI upstream (see the module docstring for its API)."""

    base_path = "/v1"
    not_found_text = "Unknown request URL"

    def __init__(
        self,
        *,
        default: Any = None,
        api_key: str | None = None,
        cached_tokens: int = 0,
        models: Sequence[str] = ("gpt-4o-mini", "gpt-4o"),
    ) -> None:
        super().__init__(default=default, api_key=api_key, cached_tokens=cached_tokens)
        self.models = tuple(models)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if self.api_key is not None:
            provided = request.headers.get("authorization", "").removeprefix("Bearer ")
            if provided != self.api_key:
                return web.json_response(
                    self.error_body(
                        401,
                        f"Incorrect API key provided: {provided}. You can find your API key "
                        "at https://platform.openai.com/account/api-keys.",
                        "invalid_api_key",
                    ),
                    status=401,
                )
        return await self.serve(request, recorded)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        behaviour = self.next_behaviour()
        if behaviour is not None and not isinstance(behaviour, Embeddings):
            return await self.perform(behaviour, request, recorded)
        body = recorded.json if isinstance(recorded.json, dict) else {}
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else raw
        size = body.get("dimensions") or 8
        data = []
        prompt = 0
        for index, item in enumerate(inputs or ()):
            text = item if isinstance(item, str) else " ".join(str(t) for t in item)
            prompt += len(words(text))
            vector = fake_vector(text, size)
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{size}f", *vector)
                data.append(
                    {
                        "object": "embedding",
                        "index": index,
                        "embedding": base64.b64encode(packed).decode(),
                    }
                )
            else:
                data.append({"object": "embedding", "index": index, "embedding": vector})
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        data = [
            {"id": model, "object": "model", "created": CREATED, "owned_by": "fake"}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def perform(
        self, behaviour: Any, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        if isinstance(behaviour, StreamError):
            error = {"message": behaviour.message, "code": behaviour.code}
            if not self.is_stream(recorded):
                return web.json_response({"error": error})
            reply = self.default_reply(recorded)
            events = self.reply_events(reply, recorded)
            chunk = self._chunk(recorded, reply, [], usage=None)
            chunk["error"] = error
            return await self.stream_events(
                request,
                [events[0], *events[1 : 1 + behaviour.after_chunks], sse(chunk), DONE],
            )
        return await super().perform(behaviour, request, recorded)

    # --- rendering ----------------------------------------------------------------------------

    def default_reply(self, recorded: RecordedRequest) -> Reply:
        return Reply()

    def error_body(self, status: int, message: str | None, code: str | None) -> Any:
        kind = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            403: "permission_denied",
            404: "invalid_request_error",
            429: "rate_limit_exceeded" if code is None else "requests",
        }.get(status, "server_error")
        return {
            "error": {
                "message": message or f"Fake upstream error {status}",
                "type": kind,
                "param": None,
                "code": code,
            }
        }

    def _resolve(self, reply: Reply, recorded: RecordedRequest) -> dict[str, Any]:
        """The reply's concrete text, tool calls, finish reason and usage."""
        served = self.next_number()
        body = recorded.json if isinstance(recorded.json, dict) else {}
        calls = scripted_calls(reply.tool_calls, f"call_fake_{served}")
        text = reply.text
        finish = reply.finish_reason
        if text is None and not calls and reply.refusal is None:
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            text, cut = truncate(default_reply_text(body), limit)
            if cut:
                finish = finish or "length"
        if finish is None:
            finish = "tool_calls" if calls else "stop"
        usage = scripted_usage(reply.usage)
        if usage is None:
            prompt = prompt_words(body)
            completion = len(words(text or "")) + sum(len(words(c["arguments"])) for c in calls)
            completion += len(words(reply.reasoning or ""))
            usage = Usage(
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=min(self.cached_tokens, prompt),
                reasoning_tokens=len(words(reply.reasoning or "")),
            ).to_json()
        return {
            "id": f"chatcmpl-fake{served}",
            "model": reply.model or body.get("model") or "fake-model",
            "text": text,
            "calls": calls,
            "finish": finish,
            "usage": usage,
        }

    def reply_body(self, reply: Any, recorded: RecordedRequest) -> tuple[int, Any]:
        resolved = self._resolve(reply, recorded)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": resolved["text"],
            "refusal": reply.refusal,
            "annotations": [],
        }
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if resolved["calls"]:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in resolved["calls"]
            ]
        return 200, {
            "id": resolved["id"],
            "object": "chat.completion",
            "created": CREATED,
            "model": resolved["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": resolved["finish"],
                }
            ],
            "usage": resolved["usage"],
            "system_fingerprint": "fp_fake",
        }

    def _chunk(
        self,
        recorded: RecordedRequest,
        resolved: Any,
        choices: list[dict[str, Any]],
        *,
        usage: Any,
    ) -> dict[str, Any]:
        body = recorded.json if isinstance(recorded.json, dict) else {}
        chunk: dict[str, Any] = {
            "id": resolved["id"] if isinstance(resolved, dict) else "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": (resolved["model"] if isinstance(resolved, dict) else None)
            or body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if _include_usage(body):
            chunk["usage"] = usage
        return chunk

    def reply_events(self, reply: Any, recorded: RecordedRequest) -> list[bytes]:
        resolved = self._resolve(reply, recorded)
        body = recorded.json if isinstance(recorded.json, dict) else {}

        def delta(payload: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": payload, "logprobs": None, "finish_reason": finish}
            return sse(self._chunk(recorded, resolved, [choice], usage=None))

        role: dict[str, Any] = {"role": "assistant", "content": "" if resolved["text"] else None}
        if reply.refusal is not None:
            role["refusal"] = None
        events = [delta(role)]
        for piece in pieces(reply.reasoning or ""):
            events.append(delta({"reasoning_content": piece}))
        for piece in pieces(resolved["text"] or ""):
            events.append(delta({"content": piece}))
        if reply.refusal:
            for piece in pieces(reply.refusal):
                events.append(delta({"refusal": piece}))
        events.extend(self._tool_call_events(resolved["calls"], reply.interleave, delta))
        events.append(delta({}, resolved["finish"]))
        if _include_usage(body):
            events.append(sse(self._chunk(recorded, resolved, [], usage=resolved["usage"])))
        events.append(DONE)
        return events

    @staticmethod
    def _tool_call_events(calls: list[dict[str, Any]], interleave: bool, delta: Any) -> list[bytes]:
        per_call: list[list[bytes]] = []
        for index, call in enumerate(calls):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            steps = [delta({"tool_calls": [first]})]
            for fragment in split_fragments(call["arguments"], 7):
                if fragment:
                    piece = {"index": index, "function": {"arguments": fragment}}
                    steps.append(delta({"tool_calls": [piece]}))
            per_call.append(steps)
        if not interleave:
            return [event for steps in per_call for event in steps]
        events: list[bytes] = []
        for step in range(max((len(steps) for steps in per_call), default=0)):
            for steps in per_call:
                if step < len(steps):
                    events.append(steps[step])
        return events


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
