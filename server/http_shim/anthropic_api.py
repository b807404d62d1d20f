"""Anthropic-compatible endpoint: ``POST /v1/messages`` onto the core ``Gateway``.

Mirrors Anthropic's Messages API (non-streamed and streamed with its exact SSE event sequence)
so the official ``anthropic`` SDKs work by changing only ``base_url``; any gateway model answers
(``openai/gpt-4o-mini`` as well as ``anthropic/...``). Conversion lives in
``anthropic_convert``; this module is the edge: auth, body, deadline, status and headers.

Auth: ``x-api-key: <gateway key>`` or ``Authorization: Bearer <gateway key>``;
``anthropic-version`` and ``anthropic-beta`` are accepted and ignored. The Switchboard request
headers of the OpenAI surface apply too (``x-switchboard-route``, ``x-switchboard-timeout``,
``x-request-id``). Response headers: ``x-request-id`` and ``request-id`` (Anthropic's name, read
by the SDKs), ``x-switchboard-provider`` / ``-model`` / ``-attempts`` and, non-streamed,
``x-switchboard-cost-usd``. Errors have Anthropic's shape; once a stream has started they are an
``event: error`` and the stream ends. ``/v1/messages/count_tokens`` is not served: the gateway
has no tokenizer for every upstream, and an estimate would be worse than a clear 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson
from switchboard.v1 import chat_pb2

from server.core.context import CallContext
from server.core.errors import GatewayError, UnauthenticatedError, UpstreamStreamError
from server.core.service import Gateway, bearer_token
from server.http_shim.anthropic_convert import (
    decode_request,
    encode_error,
    encode_response,
    error_json,
)
from server.http_shim.anthropic_stream import StreamEncoder, stream_error_event
from server.http_shim.asgi import ClientDisconnected, DisconnectWatch, Headers, HttpRequest
from server.http_shim.edge import apply_switchboard_headers, route_headers, usd_header
from server.http_shim.errors import error_headers

if TYPE_CHECKING:
    from server.http_shim.app import Route

log = logging.getLogger("switchboard.http")

# Anthropic's own limit for the Messages API (docs.claude.com/en/api/errors, 413).
MAX_BODY_BYTES = 32 * 1024 * 1024

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Reverse proxies (nginx) must not buffer the stream.
    (b"x-accel-buffering", b"no"),
]
_INTERNAL_MESSAGE = "Internal error in the gateway."
_MISSING_KEY = "Missing gateway key: send `x-api-key: <key>` or `Authorization: Bearer <key>`."


class AnthropicApi:
    """Handlers of the Anthropic-compatible surface, bound to one Gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def messages(self, req: HttpRequest) -> int:
        """``POST /v1/messages``; returns the HTTP status sent."""
        try:
            token = req.header(b"x-api-key") or bearer_token(req.header(b"authorization"))
            if not token:
                raise UnauthenticatedError(_MISSING_KEY)
            principal = self.gateway.authenticate(token)
            request, stream = decode_request(await req.body(MAX_BODY_BYTES))
            timeout = apply_switchboard_headers(req, request)
            ctx = self.gateway.new_context(
                principal, transport="http", request_id=req.request_id, timeout=timeout
            )
            if stream:
                return await self._stream(req, request, ctx)
            return await self._complete(req, request, ctx)
        except GatewayError as exc:
            return await _respond_error(req, exc)
        except ClientDisconnected:
            raise
        except Exception:
            # Never a trace to the client; the log names the request so it can be found.
            log.exception("unhandled error in POST /v1/messages (request %s)", req.request_id)
            body = orjson.dumps(error_json(500, _INTERNAL_MESSAGE, req.request_id))
            # RuntimeError: the response had already started; the server closes the connection.
            with contextlib.suppress(RuntimeError):
                await req.respond_json(500, body, _id_header(req))
            return 500

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
        headers = _id_header(req)
        headers.extend(route_headers(response.route))
        headers.append((b"x-switchboard-cost-usd", usd_header(response.cost.total_usd)))
        await req.respond_json(200, encode_response(response), headers)
        return 200

    async def _stream(
        self, req: HttpRequest, request: chat_pb2.ChatRequest, ctx: CallContext
    ) -> int:
        frames = self.gateway.stream_chat(request, ctx)
        watch = DisconnectWatch(req.receive)
        try:
            return await _relay(req, request.model, frames, watch)
        except asyncio.CancelledError:
            if watch.absorb():
                return 499
            raise
        finally:
            watch.stop()
            await frames.aclose()  # type: ignore[attr-defined]


async def _relay(
    req: HttpRequest,
    model: str,
    frames: AsyncIterator[chat_pb2.StreamChatResponse],
    watch: DisconnectWatch,
) -> int:
    """Holds the response until the first frame (errors stay HTTP errors), then relays SSE."""
    send = req.send
    try:
        first = await anext(frames)
        if first.WhichOneof("frame") != "start":
            raise UpstreamStreamError("The stream did not begin with a start frame.")
    except GatewayError as exc:
        watch.stop()
        return await _respond_error(req, exc)
    encoder = StreamEncoder(model)
    headers = req.base_headers()
    headers.extend(_id_header(req))
    headers.extend(_SSE_HEADERS)
    headers.extend(route_headers(first.start.route))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    out = encoder.start(first.start)
    try:
        async for frame in frames:
            if frame.WhichOneof("frame") == "end":
                watch.stop()
                await send({"type": "http.response.body", "body": out + encoder.end(frame.end)})
                return 200
            out += encoder.encode(frame)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
                out = b""
        raise UpstreamStreamError("The upstream stream ended without a final frame.")
    except GatewayError as exc:
        error = stream_error_event(exc.http_status, exc.message)
    except Exception:
        log.exception("stream failed after it started (request %s)", req.request_id)
        error = stream_error_event(500, _INTERNAL_MESSAGE)
    watch.stop()
    await send({"type": "http.response.body", "body": out + error})
    return 200


async def _respond_error(req: HttpRequest, exc: GatewayError) -> int:
    headers = _id_header(req)
    headers.extend(error_headers(exc))
    await req.respond_json(exc.http_status, encode_error(exc, req.request_id), headers)
    return exc.http_status


def _id_header(req: HttpRequest) -> Headers:
    # Anthropic's SDKs read `request-id` (message._request_id); x-request-id is the base header.
    return [(b"request-id", req.request_id.encode("ascii"))]


def anthropic_routes(gateway: Gateway) -> list[Route]:
    """The Anthropic-compatible surface, for ``create_app``'s route table."""
    # Imported here: app.py imports this module to build its table.
    from server.http_shim.app import Route

    api = AnthropicApi(gateway)
    return [Route("POST", "/v1/messages", api.messages)]
