"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Mirrors the OpenAI REST API on top of ``server.core.service.Gateway``: parse and authenticate at
the edge, convert to ``switchboard.v1``, call the one core entry point, convert back. Errors are
OpenAI-shaped (``errors.py``); a stream that already started ends with an error event instead.

Request headers: ``x-switchboard-route``, ``x-switchboard-timeout`` (see ``edge.py``) and
``x-request-id`` (kept when safe; it becomes the response id ``chatcmpl-<request id>``).
Response headers: ``x-request-id``, ``x-switchboard-provider``, ``x-switchboard-model``,
``x-switchboard-attempts`` and, on non-streamed responses, ``x-switchboard-cost-usd``; a stream
holds its response start until the first frame so that these carry the route, and so that an
error before it is a JSON error with its status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from switchboard.v1 import chat_pb2

from server.core.context import CallContext
from server.core.errors import GatewayError, UpstreamStreamError
from server.core.service import Gateway, bearer_token
from server.http_shim.asgi import DisconnectWatch, Headers, HttpRequest
from server.http_shim.edge import apply_switchboard_headers, route_headers, usd_header
from server.http_shim.errors import error_body, error_headers, error_object, openai_error
from server.http_shim.openai_convert import (
    completion_json,
    model_json,
    models_json,
    to_chat_request,
)
from server.http_shim.openai_schema import parse_chat_request
from server.http_shim.sse import ChunkEncoder, sse_event

log = logging.getLogger("switchboard.http")

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Reverse proxies (nginx) must not buffer the stream.
    (b"x-accel-buffering", b"no"),
]
_INTERNAL = orjson.dumps(
    {"error": openai_error(500, "Internal error in the gateway.", code="internal_error")}
)


class OpenAIApi:
    """Handlers of the OpenAI-compatible surface, bound to one Gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # --- /v1/chat/completions -------------------------------------------------------------

    async def chat_completions(self, req: HttpRequest) -> int:
        """``POST /v1/chat/completions``; returns the HTTP status sent."""
        try:
            principal = await self.gateway.authenticate(bearer_token(req.header(b"authorization")))
            body = parse_chat_request(await req.body())
            request = to_chat_request(body)
            timeout = apply_switchboard_headers(req, request)
            ctx = self.gateway.new_context(
                principal, transport="http", request_id=req.request_id, timeout=timeout
            )
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                return await self._stream(req, request, ctx, include_usage)
            return await self._complete(req, request, ctx)
        except GatewayError as exc:
            await req.respond_json(exc.http_status, error_body(exc), error_headers(exc))
            return exc.http_status

    async def _complete(
        self, req: HttpRequest, request: chat_pb2.ChatRequest, ctx: CallContext
    ) -> int:
        watch = DisconnectWatch(req.receive)
        try:
            response = await self.gateway.chat(request, ctx)
        except asyncio.CancelledError:
            if watch.absorb():
                return 499
            raise
        finally:
            watch.stop()
        headers = route_headers(response.route)
        headers.append((b"x-switchboard-cost-usd", usd_header(response.cost.total_usd)))
        await req.respond_json(200, orjson.dumps(completion_json(response)), headers)
        return 200

    async def _stream(
        self,
        req: HttpRequest,
        request: chat_pb2.ChatRequest,
        ctx: CallContext,
        include_usage: bool,
    ) -> int:
        frames = self.gateway.stream_chat(request, ctx)
        watch = DisconnectWatch(req.receive)
        try:
            return await _relay(req, frames, watch, include_usage)
        except asyncio.CancelledError:
            if watch.absorb():
                return 499
            raise
        finally:
            watch.stop()
            await frames.aclose()  # type: ignore[attr-defined]

    # --- /v1/models -------------------------------------------------------------------------

    async def list_models(self, req: HttpRequest) -> int:
        """``GET /v1/models``: every route and deployment, as OpenAI model objects."""
        try:
            principal = await self.gateway.authenticate(bearer_token(req.header(b"authorization")))
            ctx = self.gateway.new_context(principal, transport="http", request_id=req.request_id)
            models = await self.gateway.list_models(ctx)
        except GatewayError as exc:
            await req.respond_json(exc.http_status, error_body(exc), error_headers(exc))
            return exc.http_status
        await req.respond_json(200, orjson.dumps(models_json(models)))
        return 200

    async def retrieve_model(self, req: HttpRequest) -> int:
        """``GET /v1/models/{id}``; ids may contain slashes (``openai/gpt-4o-mini``)."""
        model_id = req.path.partition("/models/")[2]
        try:
            principal = await self.gateway.authenticate(bearer_token(req.header(b"authorization")))
            ctx = self.gateway.new_context(principal, transport="http", request_id=req.request_id)
            model = await self.gateway.get_model(ctx, model_id)
        except GatewayError as exc:
            await req.respond_json(exc.http_status, error_body(exc), error_headers(exc))
            return exc.http_status
        await req.respond_json(200, orjson.dumps(model_json(model)))
        return 200


async def _relay(
    req: HttpRequest,
    frames: AsyncIterator[chat_pb2.StreamChatResponse],
    watch: DisconnectWatch,
    include_usage: bool,
) -> int:
    """Holds the response until the first frame, then relays the stream as SSE."""
    send = req.send
    try:
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "start":
            raise UpstreamStreamError("The stream did not begin with a start frame.")
        # The first content frame follows the start frame without waiting on the upstream, so
        # peeking at it costs nothing and lets the role chunk match it (content null before a
        # tool call, as OpenAI sends it).
        peek = await anext(frames, None)
    except GatewayError as exc:
        watch.stop()
        await req.respond_json(exc.http_status, error_body(exc), error_headers(exc))
        return exc.http_status
    encoder = ChunkEncoder(first.start, include_usage=include_usage)
    headers = req.base_headers()
    headers.extend(_SSE_HEADERS)
    headers.extend(route_headers(first.start.route))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    tool_first = peek is not None and peek.WhichOneof("frame") == "tool_call"
    out = encoder.role(content_null=tool_first)
    try:
        frame = peek
        while frame is not None:
            if frame.WhichOneof("frame") == "end":
                watch.stop()
                await send({"type": "http.response.body", "body": out + encoder.end(frame.end)})
                return 200
            out += encoder.frame(frame)
            await send({"type": "http.response.body", "body": out, "more_body": True})
            out = b""
            frame = await anext(frames, None)
        raise UpstreamStreamError("The upstream stream ended without a final frame.")
    except GatewayError as exc:
        error = sse_event({"error": error_object(exc)})
    except Exception:
        log.exception("stream failed after it started (request %s)", req.request_id)
        error = sse_event(orjson.loads(_INTERNAL))
    watch.stop()
    await send({"type": "http.response.body", "body": out + error})
    return 200


def internal_error_body() -> bytes:
    """The body of a 500: never a trace, never an internal message."""
    return _INTERNAL
