"""``switchboard.v1.EmbedRequest`` ⇄ OpenAI ``POST /embeddings`` (``CreateEmbeddingRequest``).

Texts go as a list of strings and token arrays as lists of integers (OpenAI does not take the
two mixed in one request, so that is refused); ``dimensions`` and ``user`` when set; fields the
contract does not model pass through unchanged. Vectors are asked for as floats and read in
either encoding, in ``index`` order; usage is ``prompt_tokens``.
"""

from __future__ import annotations

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError, UpstreamServerError
from server.providers.codec import Json, struct_to_dict
from server.providers.embed_codec import vector_from_wire
from server.providers.openai_compat.codec import decode_usage

# Fields the adapter owns; a passthrough that set them is refused.
RESERVED_EMBED_PASSTHROUGH = frozenset({"model", "input", "encoding_format"})


def encode_embed_request(request: chat_pb2.EmbedRequest, model: str) -> Json:
    """The ``/embeddings`` body for ``request`` against upstream model ``model``."""
    kinds = {item.WhichOneof("input") for item in request.inputs}
    if len(kinds) > 1:
        raise UnsupportedFeatureError(
            "OpenAI-compatible upstreams take texts or token arrays, not both in one request",
            param="input",
        )
    inputs: list[object] = [
        list(item.tokens.ids) if item.WhichOneof("input") == "tokens" else item.text
        for item in request.inputs
    ]
    body: Json = {"model": model, "input": inputs, "encoding_format": "float"}
    if request.HasField("dimensions"):
        body["dimensions"] = request.dimensions
    if request.user:
        body["user"] = request.user
    if request.HasField("passthrough"):
        extra = struct_to_dict(request.passthrough)
        clash = sorted(RESERVED_EMBED_PASSTHROUGH.intersection(extra))
        if clash:
            raise InvalidRequestError(f"passthrough may not set '{clash[0]}'", param=clash[0])
        body.update(extra)
    return body


def decode_embed_response(body: Json, count: int, provider: str) -> chat_pb2.EmbedResponse:
    """A ``list`` of ``embedding`` objects → the contract's vectors (by index) and usage."""
    data = body.get("data")
    if not isinstance(data, list) or len(data) != count:
        raise UpstreamServerError(
            f"upstream sent {len(data) if isinstance(data, list) else 'no'} embeddings "
            f"for {count} inputs",
            provider=provider,
            status=200,
        )
    vectors: dict[int, list[float]] = {}
    for position, item in enumerate(data):
        entry = item if isinstance(item, dict) else {}
        index = entry.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            index = position
        vectors[index] = vector_from_wire(entry.get("embedding"), provider)
    response = chat_pb2.EmbedResponse()
    for index in sorted(vectors):
        response.embeddings.add(index=index, values=vectors[index])
    usage = decode_usage(body.get("usage"))
    response.usage.CopyFrom(types_pb2.Usage(input_tokens=usage.input_tokens))
    return response
