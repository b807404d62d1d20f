"""The OpenAI Responses API dialect (``POST /v1/responses``) and its stored-response endpoints.

``POST /v1/responses`` is one more ``Dialect`` on the shared ``endpoint.ChatEndpoint``: the body
is validated by ``responses_schema`` and converted by ``responses_convert``; answers are
``response`` objects, streams the typed events of ``responses_stream``, errors OpenAI's
``{"error": {...}}``. Conversation state lives in the core (``server.core.conversation``):
``store`` (default true) keeps the response, ``previous_response_id`` continues one.

``ResponsesApi`` serves the rest, over ``Gateway.get_response`` / ``delete_response`` (scoped to
the calling key; another key's id is a 404 like an unknown one): ``GET /v1/responses/{id}``,
``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` (OpenAI's list
pagination: ``order`` ``desc`` by default, ``limit`` 1-100, default 20, ``after`` an item id).
"""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson
from switchboard.v1 import chat_pb2

from server.core.errors import GatewayError, InvalidRequestError, NotFoundError
from server.core.service import Gateway
from server.http_shim.asgi import HttpRequest
from server.http_shim.endpoint import Parsed
from server.http_shim.openai_dialect import OpenAIShaped, http_context, respond_error
from server.http_shim.responses_convert import (
    completed_json,
    input_items_json,
    response_id_of,
    to_chat_request,
)
from server.http_shim.responses_schema import parse_create_response
from server.http_shim.responses_stream import ResponsesStream

_PREFIX = "/responses/"


class ResponsesDialect(OpenAIShaped):
    """``server.http_shim.endpoint.Dialect`` for the OpenAI Responses API."""

    name = "responses"

    def parse(self, body: bytes) -> Parsed:
        """Validated with pydantic, then converted."""
        wire = parse_create_response(body, self.bounds)
        return Parsed(to_chat_request(wire), bool(wire.stream))

    def encode(self, response: chat_pb2.ChatResponse, parsed: Parsed) -> bytes:
        """A ``response`` object."""
        request = parsed.request
        assert isinstance(request, chat_pb2.ChatRequest)
        response_id = response_id_of(response.response_id, response.id)
        return orjson.dumps(completed_json(request, response, response_id))

    def stream_encoder(self, parsed: Parsed, start: chat_pb2.StreamStart) -> ResponsesStream:
        """The typed Responses events."""
        request = parsed.request
        assert isinstance(request, chat_pb2.ChatRequest)
        return ResponsesStream(request, start)


class ResponsesApi:
    """``GET`` / ``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def get(self, req: HttpRequest) -> int:
        """A stored response, or its input items."""
        response_id, sub = _target(req.path)
        try:
            ctx = await http_context(self.gateway, req)
            if sub not in ("", "input_items"):
                raise NotFoundError(f"Invalid URL (GET {req.path})")
            stored = await self.gateway.get_response(ctx, response_id)
            if sub == "input_items":
                body = _input_items(stored, req.scope.get("query_string", b""))
            else:
                body = completed_json(
                    stored.request, stored.response, stored.id, completed_at=stored.created
                )
        except GatewayError as exc:
            return await respond_error(req, exc)
        await req.respond_json(200, orjson.dumps(body))
        return 200

    async def delete(self, req: HttpRequest) -> int:
        """Deletes a stored response: ``{"id", "object": "response", "deleted": true}``."""
        response_id, sub = _target(req.path)
        try:
            ctx = await http_context(self.gateway, req)
            if sub:
                raise NotFoundError(f"Invalid URL (DELETE {req.path})")
            await self.gateway.delete_response(ctx, response_id)
        except GatewayError as exc:
            return await respond_error(req, exc)
        body = {"id": response_id, "object": "response", "deleted": True}
        await req.respond_json(200, orjson.dumps(body))
        return 200


def _target(path: str) -> tuple[str, str]:
    rest = path.partition(_PREFIX)[2]
    response_id, _, sub = rest.partition("/")
    return response_id, sub


def _input_items(stored: chat_pb2.StoredResponse, query: bytes) -> dict[str, object]:
    params = parse_qs(query.decode("latin-1"))
    order = params.get("order", ["desc"])[-1]
    if order not in ("asc", "desc"):
        raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
    try:
        limit = int(params.get("limit", ["20"])[-1])
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequestError("limit must be an integer from 1 to 100", param="limit")
    items = input_items_json(stored)
    if order == "desc":
        items.reverse()
    after = params.get("after", [""])[-1]
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequestError(f"No input item has the id '{after}'.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
