"""Shared machinery for fake upstreams: a real aiohttp server on 127.0.0.1:0 that records every
request and answers from a FIFO script of behaviours, falling back to a default.

Wire-neutral behaviours live here (``Status``, ``Json``, ``Raw``, ``Delay``, ``Stall``,
``CutStream``, ``Disconnect``), as do the scripted ``ToolCall`` and the helpers every wire's
rendering uses (``words``, ``pieces``, ``truncate``, ``scripted_usage``, ``sse``). A wire
format's fake (``FakeOpenAI``, ``FakeAnthropic``, ``FakeGemini``) subclasses ``FakeUpstream``
and supplies its routes, its reply rendering and its error body shape: the hooks documented on
``FakeUpstream``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

# --- wire-neutral behaviours ------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error ``status`` in the fake's own error shape (or ``body`` verbatim).

    ``Status(429, headers={"retry-after": "1"})``; ``Status(400, message="bad temperature")``.
    """

    status: int
    message: str | None = None
    headers: Mapping[str, str] | None = None
    # Short machine code in the error body (OpenAI ``error.code``), e.g. "rate_limit_exceeded".
    code: str | None = None
    # A full JSON body to send instead of the fake's error shape.
    body: Any = None


@dataclass(frozen=True)
class Json:
    """Answer with an arbitrary JSON ``body`` (any status)."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Raw:
    """Answer with raw bytes, e.g. a recorded SSE body replayed verbatim."""

    body: bytes | str
    status: int = 200
    content_type: str = "text/event-stream"
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before answering with ``then`` (default: the fake's default answer)."""

    seconds: float
    then: Any = None


@dataclass(frozen=True)
class Stall:
    """Accept and never answer. ``after_chunks=n`` sends headers and n stream events first."""

    after_chunks: int | None = None
    reply: Any = None


@dataclass(frozen=True)
class CutStream:
    """Send the headers and the first ``after_chunks`` stream events of ``reply`` (default: the
    default answer), then drop the connection. On a non-streamed request: half the body."""

    after_chunks: int = 1
    reply: Any = None


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without any response."""


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake model makes (OpenAI ``tool_calls``, Anthropic ``tool_use``, Gemini
    ``functionCall``); ``arguments`` is JSON text or a dict."""

    name: str
    arguments: str | Mapping[str, Any] = "{}"
    id: str | None = None

    @classmethod
    def of(cls, call: ToolCall | Mapping[str, Any]) -> ToolCall:
        """A ``ToolCall`` from one, or from a dict of its fields (as scripts may give)."""
        return call if isinstance(call, ToolCall) else cls(**dict(call))

    def arguments_text(self) -> str:
        """The arguments as JSON text."""
        if isinstance(self.arguments, str):
            return self.arguments
        return orjson.dumps(self.arguments).decode()


def scripted_calls(
    calls: Sequence[ToolCall | Mapping[str, Any]], id_prefix: str
) -> list[dict[str, str]]:
    """``{"id", "name", "arguments"}`` per scripted call; a call without an id gets
    ``<id_prefix>_<position>``."""
    out = []
    for number, call in enumerate(calls):
        spec = ToolCall.of(call)
        out.append(
            {
                "id": spec.id or f"{id_prefix}_{number}",
                "name": spec.name,
                "arguments": spec.arguments_text(),
            }
        )
    return out


def fake_vector(text: str, size: int) -> list[float]:
    """A deterministic vector for ``text`` (the fakes' embeddings): ``size`` numbers in
    [-1, 1] with six decimals, derived from a hash of the text."""
    out = []
    for i in range(size):
        digest = hashlib.blake2b(f"{i}:{text}".encode(), digest_size=4).digest()
        out.append(round(int.from_bytes(digest, "little") / 2**31 - 1.0, 6))
    return out


# --- recorded requests ------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    json: Any = None


@dataclass
class _Scripted:
    queue: deque[Any] = field(default_factory=deque)


class FakeUpstream:
    """Base of every fake upstream (async context manager; see the module docstring).

    Subclasses implement:
    - ``routes(app)``: register handlers; each handler calls ``await self.serve(request)``.
    - ``is_stream(recorded) -> bool``: whether the request asked for a stream.
    - ``default_reply(recorded)``: the wire reply used when nothing is scripted.
    - ``reply_events(reply, recorded) -> list[bytes]``: a reply as framed stream events.
    - ``reply_body(reply, recorded) -> (status, json)``: a reply as a non-streamed body.
    - ``error_body(status, message, code) -> json``: the wire's error shape.
    and may override ``perform`` for wire-specific behaviours (calling ``super().perform``).
    """

    base_path = ""
    stream_content_type = "text/event-stream"
    # Start of the message a 404 for an unknown path carries.
    not_found_text = "Not found"

    def __init__(
        self, *, default: Any = None, api_key: str | None = None, cached_tokens: int = 0
    ) -> None:
        self.requests: list[RecordedRequest] = []
        # Behaviour used when the script is empty; None means the canned default reply.
        self.default = default
        # When set, requests carrying another key are refused the way the wire refuses them.
        self.api_key = api_key
        # Prompt tokens the default usage reports as read from the provider's cache (capped).
        self.cached_tokens = cached_tokens
        # Replies rendered so far: numbers response and tool-call ids.
        self._served = 0
        # Handlers cancelled because the client went away (e.g. the gateway cancelled upstream).
        self.cancelled = 0
        self._script = _Scripted()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The ephemeral port the fake listens on."""
        return self._port

    @property
    def base_url(self) -> str:
        """What a client uses as its base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._port}{self.base_path}"

    # --- scripting ----------------------------------------------------------------------------

    def script(self, *behaviours: Any) -> None:
        """Queue behaviours; each request takes the next one (FIFO), then falls back."""
        self._script.queue.extend(behaviours)

    @property
    def pending(self) -> int:
        """Behaviours scripted but not yet used."""
        return len(self._script.queue)

    def clear(self) -> None:
        """Forget recorded requests and scripted behaviours."""
        self.requests.clear()
        self._script.queue.clear()

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        return self.requests[-1]

    async def wait_for_requests(self, count: int, seconds: float = 5.0) -> None:
        """Wait (at most ``seconds``) until at least ``count`` requests have arrived."""
        async with asyncio.timeout(seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    # --- serving ------------------------------------------------------------------------------

    async def record(self, request: web.Request) -> RecordedRequest:
        """Reads and stores one request."""
        body = await request.read()
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            json=parsed,
        )
        self.requests.append(recorded)
        async with self._arrived:
            self._arrived.notify_all()
        return recorded

    def next_behaviour(self) -> Any:
        """The next scripted behaviour or the default."""
        if self._script.queue:
            return self._script.queue.popleft()
        return self.default

    async def serve(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        """Answers one recorded request with the next behaviour."""
        try:
            return await self.perform(self.next_behaviour(), request, recorded)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def perform(
        self, behaviour: Any, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        """Carries out one behaviour; subclasses handle their wire's own ones first."""
        if behaviour is None:
            behaviour = self.default_reply(recorded)
        if isinstance(behaviour, Delay):
            await asyncio.sleep(behaviour.seconds)
            return await self.perform(behaviour.then, request, recorded)
        if isinstance(behaviour, Status):
            body = behaviour.body
            if body is None:
                body = self.error_body(behaviour.status, behaviour.message, behaviour.code)
            return _json_response(body, behaviour.status, behaviour.headers)
        if isinstance(behaviour, Json):
            return _json_response(behaviour.body, behaviour.status, behaviour.headers)
        if isinstance(behaviour, Raw):
            body = behaviour.body.encode() if isinstance(behaviour.body, str) else behaviour.body
            return web.Response(
                body=body,
                status=behaviour.status,
                content_type=behaviour.content_type,
                headers=dict(behaviour.headers or {}),
            )
        if isinstance(behaviour, Disconnect):
            _drop(request)
            return web.Response()
        if isinstance(behaviour, Stall):
            if behaviour.after_chunks is None:
                await self._closing.wait()
                _drop(request)
                return web.Response()
            reply = behaviour.reply or self.default_reply(recorded)
            events = self.reply_events(reply, recorded)[: behaviour.after_chunks]
            response = await self.start_stream(request)
            for event in events:
                await response.write(event)
            await self._closing.wait()
            _drop(request)
            return response
        if isinstance(behaviour, CutStream):
            reply = behaviour.reply or self.default_reply(recorded)
            if self.is_stream(recorded):
                response = await self.start_stream(request)
                for event in self.reply_events(reply, recorded)[: behaviour.after_chunks]:
                    await response.write(event)
            else:
                _, payload = self.reply_body(reply, recorded)
                data = orjson.dumps(payload)
                response = web.StreamResponse(headers={"content-type": "application/json"})
                response.content_length = len(data)
                await response.prepare(request)
                await response.write(data[: len(data) // 2])
            _drop(request)
            return response
        return await self.answer(behaviour, request, recorded)

    async def answer(
        self, reply: Any, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        """Sends a wire reply, streamed or not as the request asked."""
        if self.is_stream(recorded):
            response = await self.start_stream(request)
            delay = float(getattr(reply, "chunk_delay", 0.0) or 0.0)
            for event in self.reply_events(reply, recorded):
                if delay:
                    await asyncio.sleep(delay)
                await response.write(event)
            await response.write_eof()
            return response
        status, payload = self.reply_body(reply, recorded)
        return _json_response(payload, status, getattr(reply, "headers", None))

    async def start_stream(self, request: web.Request) -> web.StreamResponse:
        """Sends 200 and the event-stream headers."""
        response = web.StreamResponse(
            headers={"content-type": self.stream_content_type, "cache-control": "no-cache"}
        )
        await response.prepare(request)
        return response

    async def stream_events(
        self, request: web.Request, events: Sequence[bytes]
    ) -> web.StreamResponse:
        """A 200 stream of exactly ``events``, then the end of the body (a scripted error)."""
        response = await self.start_stream(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    async def not_found(self, request: web.Request, *, recorded: bool = False) -> web.Response:
        """The handler for any other path: 404 in the wire's error shape."""
        if not recorded:
            await self.record(request)
        message = f"{self.not_found_text}: {request.method} {request.path}"
        return _json_response(self.error_body(404, message, None), 404, None)

    def next_number(self) -> int:
        """Counts a rendered reply; its number goes into response and tool-call ids."""
        self._served += 1
        return self._served

    # --- hooks --------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def is_stream(self, recorded: RecordedRequest) -> bool:
        """Whether the request asked for a stream (``"stream": true``; Gemini: by path)."""
        return isinstance(recorded.json, dict) and recorded.json.get("stream") is True

    def default_reply(self, recorded: RecordedRequest) -> Any:
        raise NotImplementedError

    def reply_events(self, reply: Any, recorded: RecordedRequest) -> list[bytes]:
        raise NotImplementedError

    def reply_body(self, reply: Any, recorded: RecordedRequest) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str | None, code: str | None) -> Any:
        raise NotImplementedError


def _json_response(body: Any, status: int, headers: Mapping[str, str] | None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=dict(headers or {}),
    )


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


def words(text: str) -> list[str]:
    """Whitespace-separated words: the fakes' (and the demo's) token unit."""
    return text.split()


def reply_to(text: str) -> str:
    """The default reply's text for a last user message ``text``."""
    return f"Fake reply to: {text}".strip()


def truncate(text: str, limit: object) -> tuple[str, bool]:
    """``text`` cut to ``limit`` words when ``limit`` is an int it exceeds; True when cut."""
    if isinstance(limit, int) and len(words(text)) > limit:
        return " ".join(words(text)[:limit]), True
    return text, False


def pieces(text: str) -> list[str]:
    """``text`` cut before each word, keeping all whitespace: joining gives ``text`` back."""
    if not text:
        return []
    found = re.findall(r"\s*\S+", text)
    tail = text[len("".join(found)) :]
    if tail:
        if found:
            found[-1] += tail
        else:
            found = [tail]
    return found


def scripted_usage(usage: Any) -> Any:
    """A scripted usage as wire JSON (a wire ``Usage`` or a dict sent verbatim), None when the
    reply scripted none and the fake computes it."""
    if usage is None:
        return None
    to_json = getattr(usage, "to_json", None)
    return to_json() if to_json is not None else dict(usage)


def sse(payload: Any, *, event: str | None = None, eol: bytes = b"\n") -> bytes:
    """One server-sent event carrying ``payload`` as JSON (Gemini ends lines with ``\r\n``)."""
    head = b"event: " + event.encode() + eol if event is not None else b""
    return head + b"data: " + orjson.dumps(payload) + eol + eol


def split_fragments(text: str, size: int) -> Sequence[str]:
    """``text`` in pieces of ``size`` characters (how upstreams stream tool arguments)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
