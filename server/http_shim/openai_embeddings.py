"""OpenAI's embeddings API (``POST /v1/embeddings``) onto ``Gateway.embed``.

Mirrors ``CreateEmbeddingRequest`` / ``CreateEmbeddingResponse`` of openai-openapi: ``input`` is
a string, a list of strings, a list of token ids or a list of token-id lists; ``dimensions``,
``user`` and ``encoding_format`` (``float``, the default, or ``base64``: little-endian float32,
what the official SDKs ask for) are read; every other field becomes ``passthrough``. The answer
is a ``list`` of ``embedding`` objects with ``usage.prompt_tokens`` (plus Switchboard's
``cost_usd``). The edge (auth, limits, body bounds, errors in OpenAI's shape, route headers) is
the shared ``endpoint.ChatEndpoint``'s; this is its dialect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Discriminator, Tag
from switchboard.v1 import chat_pb2

from server.core.validate import MAX_EMBED_INPUTS
from server.http_shim.endpoint import Parsed, StreamEncoder
from server.http_shim.openai_dialect import OpenAIShaped
from server.http_shim.openai_schema import BAD_JSON, NOT_OBJECT
from server.http_shim.schema import (
    REQUEST_CONFIG,
    Int32,
    Int64,
    field_error,
    fill_passthrough,
    parse_body,
)
from server.providers.embed_codec import vector_base64


def _input_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "~str"
    if isinstance(value, list):
        first = value[0] if value else None
        if isinstance(first, list):
            return "~tokens_list"
        if isinstance(first, int) and not isinstance(first, bool):
            return "~tokens"
        return "~list"
    return None


Input = Annotated[
    Annotated[str, Tag("~str")]
    | Annotated[list[str], Tag("~list")]
    | Annotated[list[Int64], Tag("~tokens")]
    | Annotated[list[list[Int64]], Tag("~tokens_list")],
    Discriminator(
        _input_tag,
        custom_error_type="input_type",
        custom_error_message=(
            "input must be a string, an array of strings, an array of token ids or an array "
            "of token-id arrays"
        ),
    ),
]


class EmbeddingsRequest(BaseModel):
    """The body of ``POST /v1/embeddings``; unknown fields land in ``model_extra``."""

    model_config = REQUEST_CONFIG

    model: str
    input: Input
    dimensions: Int32 | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None


def parse_embeddings_request(body: bytes) -> EmbeddingsRequest:
    """Parses and validates a body; InvalidRequestError (400) naming the field."""
    return parse_body(
        body,
        EmbeddingsRequest,
        bad_json=BAD_JSON,
        not_object=NOT_OBJECT,
    )


def to_embed_request(wire: EmbeddingsRequest) -> chat_pb2.EmbedRequest:
    """The contract request for a validated body."""
    request = chat_pb2.EmbedRequest(model=wire.model, user=wire.user or "")
    items = wire.input
    if isinstance(items, str):
        request.inputs.add(text=items)
    elif items and isinstance(items[0], int):
        request.inputs.add().tokens.ids.extend(i for i in items if isinstance(i, int))
    else:
        if len(items) > MAX_EMBED_INPUTS:
            raise field_error("input", f"at most {MAX_EMBED_INPUTS} inputs are accepted")
        for item in items:
            if isinstance(item, str):
                request.inputs.add(text=item)
            elif isinstance(item, list):
                request.inputs.add().tokens.ids.extend(item)
    if wire.dimensions is not None:
        request.dimensions = wire.dimensions
    if wire.model_extra:
        fill_passthrough(request.passthrough, wire.model_extra)
    return request


def embeddings_json(response: chat_pb2.EmbedResponse, base64: bool) -> dict[str, Any]:
    """``CreateEmbeddingResponse``; vectors as float arrays or base64 float32."""
    data = [
        {
            "object": "embedding",
            "index": e.index,
            "embedding": vector_base64(e.values) if base64 else list(e.values),
        }
        for e in response.embeddings
    ]
    tokens = response.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": response.model,
        "usage": {
            "prompt_tokens": tokens,
            "total_tokens": tokens,
            "cost_usd": response.cost.total_usd,
        },
    }


class EmbeddingsDialect(OpenAIShaped):
    """``server.http_shim.endpoint.Dialect`` for ``/v1/embeddings`` (never streamed)."""

    def parse(self, body: bytes) -> Parsed:
        """The body as an ``EmbedRequest``; ``options`` is True for base64 vectors."""
        wire = parse_embeddings_request(body)
        return Parsed(to_embed_request(wire), False, wire.encoding_format == "base64")

    def encode(self, response: chat_pb2.EmbedResponse, parsed: Parsed) -> bytes:
        """A ``list`` of ``embedding`` objects."""
        return orjson.dumps(embeddings_json(response, bool(parsed.options)))

    def stream_encoder(self, parsed: Parsed, start: chat_pb2.StreamStart) -> StreamEncoder:
        """Never called: embedding requests do not stream."""
        raise AssertionError("embeddings do not stream")
