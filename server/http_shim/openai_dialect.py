"""The OpenAI Chat Completions dialect (``POST /v1/chat/completions``) and ``GET /v1/models``.

Mirrors the OpenAI REST API: the body is validated by ``openai_schema`` and converted by
``openai_convert``; responses are ``chat.completion`` objects, streams ``chat.completion.chunk``
events (``openai_stream``), errors OpenAI's ``{"error": {...}}`` (``openai_errors``). The
response id is ``chatcmpl-<request id>``; a client's safe ``x-request-id`` becomes the request
id. Switchboard-only facts (route, attempts, cost) travel in ``x-switchboard-*`` headers.
"""

from __future__ import annotations

import orjson
from switchboard.v1 import chat_pb2

from server.core.context import CallContext
from server.core.errors import GatewayError
from server.core.service import Gateway, bearer_token
from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.http_shim.asgi import MAX_BODY_BYTES, Headers, HttpRequest
from server.http_shim.edge import error_headers
from server.http_shim.endpoint import Parsed
from server.http_shim.openai_convert import (
    completion_json,
    model_json,
    models_json,
    to_chat_request,
)
from server.http_shim.openai_errors import error_body, error_object
from server.http_shim.openai_schema import parse_chat_request
from server.http_shim.openai_stream import ChunkEncoder, sse_event


class OpenAIShaped:
    """What every OpenAI-style dialect shares (chat completions, responses, embeddings): the
    key in ``Authorization: Bearer``, OpenAI's error body, no extra headers."""

    name = "openai"
    missing_key = "Missing gateway key: send `Authorization: Bearer <key>`."

    def __init__(self, max_body: int = MAX_BODY_BYTES, bounds: RequestBounds = DEFAULT_BOUNDS):
        self.max_body = max_body
        self.bounds = bounds

    def token(self, req: HttpRequest) -> str | None:
        """``Authorization: Bearer <key>``."""
        return bearer_token(req.header(b"authorization"))

    def error_body(self, exc: GatewayError, request_id: str) -> bytes:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return error_body(exc)

    def headers(self, req: HttpRequest) -> Headers:
        """Nothing beyond ``x-request-id``."""
        return []


class OpenAIDialect(OpenAIShaped):
    """``server.http_shim.endpoint.Dialect`` for OpenAI Chat Completions."""

    def parse(self, body: bytes) -> Parsed:
        """Validated with pydantic, then converted; ``stream_options.include_usage`` is kept."""
        wire = parse_chat_request(body, self.bounds)
        include_usage = bool(wire.stream_options and wire.stream_options.include_usage)
        return Parsed(to_chat_request(wire), bool(wire.stream), include_usage)

    def encode(self, response: chat_pb2.ChatResponse, parsed: Parsed) -> bytes:
        """A ``chat.completion`` object."""
        return orjson.dumps(completion_json(response))

    def stream_encoder(self, parsed: Parsed, start: chat_pb2.StreamStart) -> _ChunkStream:
        """``chat.completion.chunk`` events, usage last when the client asked for it."""
        return _ChunkStream(ChunkEncoder(start, include_usage=bool(parsed.options)))


class _ChunkStream:
    """``ChunkEncoder`` behind the endpoint's ``StreamEncoder`` protocol."""

    __slots__ = ("_encoder",)

    def __init__(self, encoder: ChunkEncoder) -> None:
        self._encoder = encoder

    def start(self, first: chat_pb2.StreamChatResponse | None) -> bytes:
        # OpenAI sends content null (not "") in the role chunk when a tool call comes first.
        tool_first = first is not None and first.WhichOneof("frame") == "tool_call"
        return self._encoder.role(content_null=tool_first)

    def frame(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        return self._encoder.frame(frame)

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        return self._encoder.end(end)

    def error(self, exc: GatewayError) -> bytes:
        # One `data: {"error": ...}` event and no [DONE].
        return sse_event({"error": error_object(exc)})


class ModelsApi:
    """``GET /v1/models`` and ``GET /v1/models/{id}`` (ids may contain slashes)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def list_models(self, req: HttpRequest) -> int:
        """Every route and deployment, as OpenAI model objects."""
        try:
            ctx = await http_context(self.gateway, req)
            models = await self.gateway.list_models(ctx)
        except GatewayError as exc:
            return await respond_error(req, exc)
        await req.respond_json(200, orjson.dumps(models_json(models)))
        return 200

    async def retrieve_model(self, req: HttpRequest) -> int:
        """One model or route; 404 ``model_not_found`` for unknown ids."""
        model_id = req.path.partition("/models/")[2]
        try:
            ctx = await http_context(self.gateway, req)
            model = await self.gateway.get_model(ctx, model_id)
        except GatewayError as exc:
            return await respond_error(req, exc)
        await req.respond_json(200, orjson.dumps(model_json(model)))
        return 200


async def http_context(gateway: Gateway, req: HttpRequest) -> CallContext:
    """The call context of a bodiless OpenAI-style request (the key in ``Authorization``)."""
    principal = await gateway.authenticate(bearer_token(req.header(b"authorization")))
    return gateway.new_context(principal, transport="http", request_id=req.request_id)


async def respond_error(req: HttpRequest, exc: GatewayError) -> int:
    """Sends ``exc`` as OpenAI's error body with its status (and Retry-After)."""
    await req.respond_json(exc.http_status, error_body(exc), error_headers(exc))
    return exc.http_status
