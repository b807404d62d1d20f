"""A fake Gemini API upstream: a real aiohttp server on 127.0.0.1 (port 0).

Usage::

    async with FakeGemini() as up:
        up.base_url                      # 'http://127.0.0.1:PORT' (clients append /v1beta/...)
        up.script(Status(503), Status(429, retry_delay="2s"), Reply(text="hi"))
        ...                              # point GeminiProvider at up.base_url
        up.requests[0].json["contents"]  # every request is recorded (.json .headers .path)

Endpoints: ``POST /v1beta/models/{model}:generateContent``, ``:embedContent``,
``:batchEmbedContents`` (``fake_vector(text, outputDimensionality or 8)`` per request, no usage
block, as gemini-embedding-001 answers) and
``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (``data: <json>\\r\\n\\r\\n``
events, as Google sends them). Anything else answers 404 in Google's error shape
``{"error": {"code", "message", "status", "details"}}``.

Default answer (nothing scripted): text ``default_reply_text(body)`` = ``"Fake reply to: <last
user text>"``; ``usageMetadata.promptTokenCount`` = words in every text of the request
(systemInstruction included), ``cachedContentTokenCount`` = the constructor's ``cached_tokens``
(capped, part of the prompt count as in Gemini), ``candidatesTokenCount`` = words produced. It
honours ``generationConfig.maxOutputTokens`` (truncates to that many words, ``MAX_TOKENS``).
With ``responseMimeType: application/json`` the default text is ``{"answer": <text>}``; when
``toolConfig`` forces a single allowed function, the default answer calls it with
``{"answer": <text>}``.

Streams send one chunk per word (thought parts first, then text), function calls all in one
chunk (as Gemini does), and a last chunk with ``finishReason``; every chunk carries the usage so
far. A ``thoughtSignature`` rides on the first function call, or on a final empty text part.

Scripting: ``up.script(*behaviours)`` queues behaviours; each request takes the next (FIFO) and
falls back to ``up.default`` (None = the canned reply) when the queue is empty.

- ``Reply(text=, tool_calls=[ToolCall(name, arguments, id)], thought=, thought_signature=,
  finish_reason= (STOP, MAX_TOKENS, SAFETY...), usage=Usage(...) or a dict sent verbatim,
  model=, chunk_delay=, headers=)``. Gemini gives calls no id unless ``ToolCall.id`` is set.
- ``Status(status, message=, headers=, code=<google status>, body=, retry_delay="3s",
  reason=)``: a Google error; ``retry_delay`` adds a ``RetryInfo`` detail, ``reason`` an
  ``ErrorInfo`` (e.g. ``API_KEY_INVALID``). The status string follows the HTTP code.
- ``StreamError(message, after_chunks=1, code=500)``: a 200 stream whose next chunk is an
  ``{"error": ...}`` object, then the stream ends.
- ``Json``, ``Raw``, ``Delay``, ``Stall``, ``CutStream``, ``Disconnect``: see tests.fakes.common.

``FakeGemini(api_key="AIza...")`` rejects other ``x-goog-api-key`` values the way Google does:
400 INVALID_ARGUMENT with ``ErrorInfo.reason`` ``API_KEY_INVALID``.
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
    ToolCall,
    fake_vector,
    pieces,
    reply_to,
    scripted_usage,
    sse,
    truncate,
    words,
)
from tests.fakes.common import Status as _BaseStatus

__all__ = [
    "CutStream",
    "Delay",
    "Disconnect",
    "FakeGemini",
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
    "google_error",
    "prompt_words",
]

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Status(_BaseStatus):
    """``tests.fakes.common.Status`` plus Google's ``RetryInfo`` / ``ErrorInfo`` details."""

    retry_delay: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Usage:
    """``usageMetadata``: ``prompt_tokens`` includes ``cached_tokens``."""

    prompt_tokens: int
    candidates_tokens: int
    cached_tokens: int = 0
    thoughts_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.candidates_tokens,
            "totalTokenCount": self.prompt_tokens + self.candidates_tokens + self.thoughts_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if self.cached_tokens:
            data["cachedContentTokenCount"] = self.cached_tokens
            data["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached_tokens}]
        if self.thoughts_tokens:
            data["thoughtsTokenCount"] = self.thoughts_tokens
        return data


@dataclass(frozen=True)
class Reply:
    """A candidate. ``text=None`` with no tool calls means the default reply."""

    text: str | None = None
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    thought: str | None = None
    thought_signature: str | None = None
    finish_reason: str | None = None
    usage: Usage | Mapping[str, Any] | None = None
    model: str | None = None
    chunk_delay: float = 0.0
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class StreamError:
    """A 200 stream whose chunk after ``after_chunks`` chunks is an ``error`` object."""

    message: str
    after_chunks: int = 1
    code: int = 500


def google_error(
    code: int,
    message: str,
    *,
    status: str | None = None,
    retry_delay: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A Google API error body."""
    details: list[dict[str, Any]] = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        )
    if retry_delay:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _text_of(parts: Any) -> str:
    out = []
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, dict):
            if isinstance(part.get("text"), str):
                out.append(part["text"])
            response = part.get("functionResponse")
            if isinstance(response, dict):
                out.append(orjson.dumps(response.get("response")).decode())
    return " ".join(out)


def prompt_words(body: Any) -> int:
    """The fake's prompt size: words in systemInstruction and every content (at least 1)."""
    if not isinstance(body, dict):
        return 1
    system = body.get("systemInstruction") or {}
    count = len(words(_text_of(system.get("parts") if isinstance(system, dict) else None)))
    for content in body.get("contents") or ():
        if isinstance(content, dict):
            count += len(words(_text_of(content.get("parts"))))
    return max(count, 1)


def default_reply_text(body: Any) -> str:
    """``Fake reply to: <last user text>`` for a request body."""
    last = ""
    for content in (body.get("contents") or ()) if isinstance(body, dict) else ():
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = [
                p["text"]
                for p in content.get("parts") or ()
                if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"]
            ]
            if texts:
                last = " ".join(texts)
    return reply_to(last)


class FakeGemini(FakeUpstream):
    """The fake Gemini upstream (see the module docstring for its API)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self._models)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        _, _, method = request.match_info["target"].rpartition(":")
        if method in ("embedContent", "batchEmbedContents"):
            return await self._embed(request, recorded, batched=method == "batchEmbedContents")
        if method not in ("generateContent", "streamGenerateContent"):
            return await self.not_found(request, recorded=True)
        if method == "streamGenerateContent" and request.query.get("alt") != "sse":
            body = google_error(400, "this fake only streams with ?alt=sse")
            return web.json_response(body, status=400)
        if self.api_key is not None:
            given = request.headers.get("x-goog-api-key") or request.query.get("key")
            if given != self.api_key:
                body = google_error(
                    400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
                )
                return web.json_response(body, status=400)
        return await self.serve(request, recorded)

    async def _embed(
        self, request: web.Request, recorded: RecordedRequest, *, batched: bool
    ) -> web.StreamResponse:
        behaviour = self.next_behaviour()
        if behaviour is not None:
            return await self.perform(behaviour, request, recorded)
        body = recorded.json if isinstance(recorded.json, dict) else {}
        singles = body.get("requests", []) if batched else [body]
        vectors = []
        for one in singles:
            parts = (one.get("content") or {}).get("parts") or []
            text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
            vectors.append({"values": fake_vector(text, one.get("outputDimensionality") or 8)})
        # Like gemini-embedding-001: no usage block.
        answer = {"embeddings": vectors} if batched else {"embedding": vectors[0]}
        return web.json_response(answer)

    async def perform(
        self, behaviour: Any, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        if isinstance(behaviour, Status) and behaviour.body is None:
            body = google_error(
                behaviour.status,
                behaviour.message or f"Fake upstream error {behaviour.status}",
                status=behaviour.code,
                retry_delay=behaviour.retry_delay,
                reason=behaviour.reason,
            )
            return web.json_response(
                body, status=behaviour.status, headers=dict(behaviour.headers or {})
            )
        if isinstance(behaviour, StreamError):
            error = google_error(behaviour.code, behaviour.message)
            if not self.is_stream(recorded):
                return web.json_response(error, status=behaviour.code)
            events = self.reply_events(self.default_reply(recorded), recorded)
            return await self.stream_events(
                request, [*events[: behaviour.after_chunks], _sse(error)]
            )
        return await super().perform(behaviour, request, recorded)

    # --- rendering ----------------------------------------------------------------------------

    def is_stream(self, recorded: RecordedRequest) -> bool:
        return ":streamGenerateContent" in recorded.path

    def default_reply(self, recorded: RecordedRequest) -> Reply:
        return Reply()

    def error_body(self, status: int, message: str | None, code: str | None) -> Any:
        return google_error(status, message or f"Fake upstream error {status}", status=code)

    def _resolve(self, reply: Reply, recorded: RecordedRequest) -> dict[str, Any]:
        served = self.next_number()
        body = recorded.json if isinstance(recorded.json, dict) else {}
        config = body.get("generationConfig") or {}
        calls = []
        for call in reply.tool_calls:
            spec = ToolCall.of(call)
            args = spec.arguments
            parsed = orjson.loads(args) if isinstance(args, str) else dict(args)
            entry: dict[str, Any] = {"name": spec.name, "args": parsed}
            if spec.id:
                entry["id"] = spec.id
            calls.append(entry)
        text = reply.text
        finish = reply.finish_reason
        if text is None and not calls:
            text, cut = truncate(default_reply_text(body), config.get("maxOutputTokens"))
            if cut:
                finish = finish or "MAX_TOKENS"
            forced = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
            allowed = forced.get("allowedFunctionNames") or []
            if forced.get("mode") == "ANY" and len(allowed) == 1:
                calls.append({"name": allowed[0], "args": {"answer": text}})
                text = None
            elif config.get("responseMimeType") == "application/json":
                text = orjson.dumps({"answer": text}).decode()
        finish = finish or "STOP"
        usage = scripted_usage(reply.usage)
        if usage is None:
            prompt = prompt_words(body)
            produced = len(words(text or "")) + sum(
                len(words(orjson.dumps(c["args"]).decode())) for c in calls
            )
            usage = Usage(
                prompt_tokens=prompt,
                candidates_tokens=produced,
                cached_tokens=min(self.cached_tokens, prompt),
                thoughts_tokens=len(words(reply.thought or "")),
            ).to_json()
        return {
            "id": f"fake-response-{served}",
            "model": reply.model or recorded.path.rpartition("/")[2].partition(":")[0],
            "text": text,
            "calls": calls,
            "finish": finish,
            "usage": usage,
        }

    def _response(
        self, resolved: dict[str, Any], parts: list[dict[str, Any]], finish: str | None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": resolved["usage"],
            "modelVersion": resolved["model"],
            "responseId": resolved["id"],
        }

    def _parts(self, reply: Reply, resolved: dict[str, Any]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if reply.thought:
            parts.append({"text": reply.thought, "thought": True})
        if resolved["text"]:
            parts.append({"text": resolved["text"]})
        for number, call in enumerate(resolved["calls"]):
            part: dict[str, Any] = {"functionCall": call}
            if number == 0 and reply.thought_signature:
                part["thoughtSignature"] = reply.thought_signature
            parts.append(part)
        if reply.thought_signature and not resolved["calls"]:
            if parts and "thought" not in parts[-1]:
                parts[-1]["thoughtSignature"] = reply.thought_signature
            else:
                parts.append({"text": "", "thoughtSignature": reply.thought_signature})
        return parts

    def reply_body(self, reply: Any, recorded: RecordedRequest) -> tuple[int, Any]:
        resolved = self._resolve(reply, recorded)
        return 200, self._response(resolved, self._parts(reply, resolved), resolved["finish"])

    def reply_events(self, reply: Any, recorded: RecordedRequest) -> list[bytes]:
        resolved = self._resolve(reply, recorded)
        chunks: list[list[dict[str, Any]]] = []
        for piece in pieces(reply.thought or ""):
            chunks.append([{"text": piece, "thought": True}])
        for piece in pieces(resolved["text"] or ""):
            chunks.append([{"text": piece}])
        if resolved["calls"]:
            chunk = []
            for number, call in enumerate(resolved["calls"]):
                part: dict[str, Any] = {"functionCall": call}
                if number == 0 and reply.thought_signature:
                    part["thoughtSignature"] = reply.thought_signature
                chunk.append(part)
            chunks.append(chunk)
        # The last chunk carries the finish reason (and, as Gemini 3 does, a bare signature).
        last: list[dict[str, Any]] = []
        if reply.thought_signature and not resolved["calls"]:
            last.append({"text": "", "thoughtSignature": reply.thought_signature})
        if last or not chunks:
            chunks.append(last or [{"text": ""}])
        events = []
        for index, parts in enumerate(chunks):
            finish = resolved["finish"] if index == len(chunks) - 1 else None
            events.append(_sse(self._response(resolved, parts, finish)))
        return events


def _sse(payload: Any) -> bytes:
    # Google frames its events with CRLF line ends.
    return sse(payload, eol=b"\r\n")
