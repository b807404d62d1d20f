"""The Anthropic Messages dialect (``POST /v1/messages``) onto the core ``Gateway``.

Mirrors Anthropic's Messages API (non-streamed and streamed with its exact SSE event sequence)
so the official ``anthropic`` SDKs work by changing only ``base_url``; any gateway model answers
(``openai/gpt-4o-mini`` as well as ``anthropic/...``). Conversion lives in
``anthropic_convert`` and the SSE events in ``anthropic_stream``; the edge itself is the shared
``endpoint.ChatEndpoint``.

Auth: ``x-api-key: <gateway key>`` or ``Authorization: Bearer <gateway key>``;
``anthropic-version`` and ``anthropic-beta`` are accepted and ignored. The Switchboard request
headers apply as on every dialect. Response headers add ``request-id`` (Anthropic's name, read by
the SDKs) to ``x-request-id``. Errors have Anthropic's shape; once a stream has started they are
an ``event: error`` and the stream ends.
"""

from __future__ import annotations

import orjson
from switchboard.v1 import chat_pb2

from server.core.errors import GatewayError, NotFoundError, UnauthenticatedError
from server.core.service import Gateway, bearer_token
from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.http_shim import anthropic_convert as convert
from server.http_shim.anthropic_stream import StreamEncoder, stream_error_event
from server.http_shim.asgi import Headers, HttpRequest
from server.http_shim.edge import error_headers
from server.http_shim.endpoint import Parsed

# Anthropic's own limit for the Messages API (docs.claude.com/en/api/errors, 413).
MAX_BODY = 32 * 1024 * 1024


class AnthropicDialect:
    """``server.http_shim.endpoint.Dialect`` for the Anthropic Messages API."""

    name = "anthropic"
    missing_key = "Missing gateway key: send `x-api-key: <key>` or `Authorization: Bearer <key>`."

    def __init__(self, max_body: int = MAX_BODY, bounds: RequestBounds = DEFAULT_BOUNDS):
        self.max_body = max_body
        self.bounds = bounds

    def token(self, req: HttpRequest) -> str | None:
        """``x-api-key``, else ``Authorization: Bearer``."""
        return req.header(b"x-api-key") or bearer_token(req.header(b"authorization"))

    def parse(self, body: bytes) -> Parsed:
        """The Messages API body as a contract request and its ``stream`` flag."""
        request, stream = convert.decode_request(body, self.bounds)
        return Parsed(request, stream)

    def encode(self, response: chat_pb2.ChatResponse, parsed: Parsed) -> bytes:
        """A Messages API ``message`` object."""
        return convert.encode_response(response)

    def error_body(self, exc: GatewayError, request_id: str) -> bytes:
        """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
        return convert.encode_error(exc, request_id)

    def headers(self, req: HttpRequest) -> Headers:
        """``request-id``: Anthropic's SDKs read it (``message._request_id``)."""
        return [(b"request-id", req.request_id.encode("ascii"))]

    def stream_encoder(self, parsed: Parsed, start: chat_pb2.StreamStart) -> _EventStream:
        """Anthropic's SSE event sequence with exact content block indexes."""
        return _EventStream(StreamEncoder(parsed.request.model), start)


class _EventStream:
    """``StreamEncoder`` behind the endpoint's ``StreamEncoder`` protocol."""

    __slots__ = ("_encoder", "_start")

    def __init__(self, encoder: StreamEncoder, start: chat_pb2.StreamStart) -> None:
        self._encoder = encoder
        self._start = start

    def start(self, first: chat_pb2.StreamChatResponse | None) -> bytes:
        return self._encoder.start(self._start)

    def frame(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        return self._encoder.encode(frame)

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        return self._encoder.end(end)

    def error(self, exc: GatewayError) -> bytes:
        return stream_error_event(exc.http_status, exc.message)


class MessagesExtras:
    """``POST /v1/messages/count_tokens`` and Anthropic-shaped 404s under ``/v1/messages/``.

    The count is exact (Anthropic's own count endpoint, through the executor) when the model's
    route has an Anthropic deployment, else an estimate: a token per four bytes of the request
    as the contract encodes it plus per-message framing (``routing.cost.estimate_input_tokens``);
    the ``x-switchboard-token-count`` header says ``exact`` or ``estimate``."""

    def __init__(self, gateway: Gateway, dialect: AnthropicDialect) -> None:
        self.gateway = gateway
        self.dialect = dialect

    async def count_tokens(self, req: HttpRequest) -> int:
        """``{"input_tokens": N}`` for a Messages body (``max_tokens`` not needed)."""
        dialect = self.dialect
        try:
            token = dialect.token(req)
            if not token:
                raise UnauthenticatedError(dialect.missing_key)
            principal = await self.gateway.authenticate(token)
            ctx = self.gateway.new_context(principal, transport="http", request_id=req.request_id)
            body = await req.body(dialect.max_body)
            request = convert.decode_count_request(body, dialect.bounds)
            tokens, exact = await self.gateway.count_tokens(request, ctx)
        except GatewayError as exc:
            return await self._error(req, exc)
        headers = dialect.headers(req)
        headers.append((b"x-switchboard-token-count", b"exact" if exact else b"estimate"))
        await req.respond_json(200, orjson.dumps({"input_tokens": tokens}), headers)
        return 200

    async def not_found(self, req: HttpRequest) -> int:
        """Anthropic's ``not_found_error`` for any other path under ``/v1/messages/``."""
        return await self._error(req, NotFoundError(f"Not found: {req.method} {req.path}"))

    async def _error(self, req: HttpRequest, exc: GatewayError) -> int:
        headers = self.dialect.headers(req)
        headers.extend(error_headers(exc))
        await req.respond_json(exc.http_status, convert.encode_error(exc, req.request_id), headers)
        return exc.http_status
