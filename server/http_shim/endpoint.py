"""The one chat endpoint, for every HTTP dialect: auth → parse → context → chat or stream → relay.

A ``Dialect`` (OpenAI chat completions, Anthropic messages, ...) says only what differs: where
the key is, how a body becomes a ``ChatRequest``, how a response, an error and a stream are
written. Everything else happens here once, so every dialect gets the same edge: the key is
checked before the body is read, ``x-switchboard-*`` headers apply, a client that goes away
cancels the upstream call, a stream holds its response start until its first frame (so that
an error before it is a JSON error with its status, and the route headers are known), and a
failure after it is the dialect's in-stream error event. Models: envoyproxy/ai-gateway's
generic ``Translator``; Starlette's ``StreamingResponse`` disconnect handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from switchboard.v1 import chat_pb2

from server.core.context import CallContext
from server.core.errors import GatewayError, UnauthenticatedError, UpstreamStreamError
from server.core.service import Gateway
from server.http_shim.asgi import (
    BODY_TIMEOUT,
    ClientDisconnected,
    DisconnectWatch,
    Headers,
    HttpRequest,
)
from server.http_shim.edge import (
    apply_route_header,
    error_headers,
    route_headers,
    timeout_header,
    usd_header,
)

log = logging.getLogger("switchboard.http")
T = TypeVar("T")

SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Reverse proxies (nginx) must not buffer the stream.
    (b"x-accel-buffering", b"no"),
]
INTERNAL_MESSAGE = "Internal error in the gateway."
# Bodies larger than this are parsed off the event loop.
THREAD_PARSE_BYTES = 256 * 1024


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, about
# 1 us more per object, and one of these is made per request. Nothing assigns to it after.
@dataclass(slots=True)
class Parsed:
    """A request body as the core sees it, plus what the dialect needs to answer it."""

    # A ChatRequest for the chat dialects, an EmbedRequest for ``/v1/embeddings``.
    request: chat_pb2.ChatRequest | chat_pb2.EmbedRequest
    stream: bool
    # Dialect-specific answer options (OpenAI's stream_options.include_usage).
    options: object = None


class StreamEncoder(Protocol):
    """Writes one stream's frames in a dialect's server-sent events."""

    def start(self, first: chat_pb2.StreamChatResponse | None) -> bytes:
        """The events that open the stream; ``first`` is the first frame after the start
        frame (OpenAI's role chunk depends on it), encoded separately by ``frame``."""
        ...

    def frame(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        """The events for a text, reasoning or tool-call frame (possibly none)."""
        ...

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        """The events that close a complete stream."""
        ...

    def error(self, exc: GatewayError) -> bytes:
        """The in-stream error event that ends a stream which already started."""
        ...


class Dialect(Protocol):
    """What one HTTP API surface says differently (``openai_dialect``, ``anthropic_dialect``)."""

    # Its name in the config file (`limits.body_bytes`).
    name: str
    # The 401 message when no key was sent (names the header(s) this dialect reads).
    missing_key: str
    # Largest request body read for this dialect, in bytes.
    max_body: int

    def token(self, req: HttpRequest) -> str | None:
        """The gateway key the request carries, if any."""
        ...

    def parse(self, body: bytes) -> Parsed:
        """The body as a contract request; a 4xx ``GatewayError`` for any malformed body."""
        ...

    def encode(self, response: Any, parsed: Parsed) -> bytes:
        """A finished call's response body (a ChatResponse, or an EmbedResponse for
        embeddings), for the request ``parsed``."""
        ...

    def error_body(self, exc: GatewayError, request_id: str) -> bytes:
        """An error's JSON body in this dialect's shape."""
        ...

    def headers(self, req: HttpRequest) -> Headers:
        """Headers this dialect adds to every response (on top of ``x-request-id``)."""
        ...

    def stream_encoder(self, parsed: Parsed, start: chat_pb2.StreamStart) -> StreamEncoder:
        """An encoder for one stream that began with ``start``."""
        ...


class ChatEndpoint:
    """``POST`` handler of one dialect's chat surface, over the core ``Gateway``.

    ``call`` is the core operation a non-streamed request runs: ``Gateway.chat`` for the chat
    dialects, ``Gateway.embed`` for ``/v1/embeddings`` (whose requests never stream)."""

    def __init__(
        self,
        gateway: Gateway,
        dialect: Dialect,
        body_timeout: float = BODY_TIMEOUT,
        *,
        call: Callable[[Any, CallContext], Awaitable[Any]] | None = None,
    ):
        self.gateway = gateway
        self.dialect = dialect
        self.body_timeout = body_timeout
        self._call: Callable[[Any, CallContext], Awaitable[Any]] = call or gateway.chat

    async def __call__(self, req: HttpRequest) -> int:
        """Serves one request; returns the HTTP status sent (200 for a stream that started)."""
        dialect = self.dialect
        gateway = self.gateway
        ctx: CallContext | None = None
        # The finally is a safety net for the concurrency slot admission took: a client gone
        # while its body was read never reaches the sinks that give it back.
        try:
            try:
                token = dialect.token(req)
                if not token:
                    raise UnauthenticatedError(dialect.missing_key)
                principal = await gateway.authenticate(token)
                ctx = gateway.new_context(
                    principal,
                    transport="http",
                    request_id=req.request_id,
                    timeout=timeout_header(req),
                    traceparent=req.header(b"traceparent"),
                )
                # The key's request rate is checked before the body is read and decoded, the
                # expensive part of a large request.
                await gateway.admit_call(ctx)
                body = await req.body(dialect.max_body, self.body_timeout)
                if len(body) > THREAD_PARSE_BYTES:
                    # Validating and converting a large body takes milliseconds to seconds of
                    # CPU: in a worker thread the event loop keeps serving everyone else.
                    parsed = await asyncio.to_thread(dialect.parse, body)
                else:
                    parsed = dialect.parse(body)
                apply_route_header(req, parsed.request)
            except GatewayError as exc:
                if ctx is not None:
                    # Refused at the edge, after the key was known: still one request of the key's.
                    gateway.refused(ctx, exc)
                return await self._error(req, exc)
            except ClientDisconnected:
                raise
            try:
                if parsed.stream:
                    return await self._stream(req, parsed, ctx)
                return await self._complete(req, parsed, ctx)
            except GatewayError as exc:
                return await self._error(req, exc)
            except ClientDisconnected:
                raise
            except Exception:
                # Never a trace to the client; the log names the request so it can be found.
                log.exception(
                    "unhandled error in %s %s (request %s)", req.method, req.path, req.request_id
                )
                # RuntimeError: the response had already started; the server closes the connection.
                with contextlib.suppress(RuntimeError):
                    await self._error(req, GatewayError(INTERNAL_MESSAGE))
                return 500
        finally:
            if ctx is not None and ctx.slots:
                gateway.end_call(ctx)

    async def _error(self, req: HttpRequest, exc: GatewayError) -> int:
        headers = self.dialect.headers(req)
        headers.extend(error_headers(exc))
        body = self.dialect.error_body(exc, req.request_id)
        await req.respond_json(exc.http_status, body, headers)
        return exc.http_status

    async def _complete(self, req: HttpRequest, parsed: Parsed, ctx: CallContext) -> int:
        request = parsed.request
        response = await _until_disconnect(req, lambda _: self._call(request, ctx))
        if response is None:
            return 499
        headers = self.dialect.headers(req)
        headers.extend(route_headers(response.route))
        headers.append((b"x-switchboard-cost-usd", usd_header(response.cost.total_usd)))
        await req.respond_json(200, self.dialect.encode(response, parsed), headers)
        return 200

    async def _stream(self, req: HttpRequest, parsed: Parsed, ctx: CallContext) -> int:
        frames = self.gateway.stream_chat(cast(chat_pb2.ChatRequest, parsed.request), ctx)
        async with contextlib.aclosing(frames):
            status = await _until_disconnect(
                req, lambda watch: self._relay(req, parsed, frames, watch)
            )
        return 499 if status is None else status

    async def _relay(
        self,
        req: HttpRequest,
        parsed: Parsed,
        frames: AsyncGenerator[chat_pb2.StreamChatResponse, None],
        watch: DisconnectWatch,
    ) -> int:
        """Holds the response until the first frame, then relays the stream as SSE."""
        send = req.send
        try:
            first = await anext(frames, None)
            if first is None or first.WhichOneof("frame") != "start":
                raise UpstreamStreamError("The stream did not begin with a start frame.")
            # The first content frame follows the start frame without waiting on the upstream,
            # so peeking at it costs nothing and lets the opening events depend on it.
            peek = await anext(frames, None)
        except GatewayError as exc:
            watch.stop()
            return await self._error(req, exc)
        encoder = self.dialect.stream_encoder(parsed, first.start)
        headers = req.base_headers()
        headers.extend(self.dialect.headers(req))
        headers.extend(SSE_HEADERS)
        headers.extend(route_headers(first.start.route))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        out = encoder.start(peek)
        try:
            frame = peek
            while frame is not None:
                if frame.WhichOneof("frame") == "end":
                    watch.stop()
                    await send({"type": "http.response.body", "body": out + encoder.end(frame.end)})
                    return 200
                out += encoder.frame(frame)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                    out = b""
                frame = await anext(frames, None)
            raise UpstreamStreamError("The upstream stream ended without a final frame.")
        except GatewayError as exc:
            error = encoder.error(exc)
        except Exception:
            log.exception("stream failed after it started (request %s)", req.request_id)
            error = encoder.error(GatewayError(INTERNAL_MESSAGE))
        watch.stop()
        await send({"type": "http.response.body", "body": out + error})
        return 200


async def _until_disconnect(
    req: HttpRequest, work: Callable[[DisconnectWatch], Awaitable[T]]
) -> T | None:
    """``work``'s result, or None when the client went away and its cancel was absorbed (the
    upstream call it was waiting on is cancelled with it)."""
    watch = DisconnectWatch(req.receive)
    try:
        return await work(watch)
    except asyncio.CancelledError:
        if watch.absorb():
            return None
        raise
    finally:
        watch.stop()
