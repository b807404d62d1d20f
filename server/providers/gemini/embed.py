"""``switchboard.v1.EmbedRequest`` ⇄ Gemini ``batchEmbedContents``.

Every request goes to ``models/{model}:batchEmbedContents`` as ``requests[]`` of
``embedContent`` requests (``{"model", "content": {"parts": [{"text"}]},
"outputDimensionality"}``), one per input, one input or many alike (at most 100 per batch:
Google refuses more, and that 400 is passed on); ``decode_embed_response`` also reads a single
``embedContent`` answer (``embedding.values``). Token arrays and
``user`` cannot be expressed and are refused; passthrough ``task_type`` / ``taskType`` and
``title`` go on every request. The answer is ``embedding.values`` or ``embeddings[].values``;
``usageMetadata.promptTokenCount`` is the usage when Google reports it (the core estimates it
otherwise).
"""

from __future__ import annotations

from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UnsupportedFeatureError, UpstreamServerError
from server.providers.codec import struct_to_dict
from server.providers.embed_codec import vector_from_wire

_PASSTHROUGH = {"task_type": "taskType", "taskType": "taskType", "title": "title"}


def encode_embed_request(request: chat_pb2.EmbedRequest, model: str) -> dict[str, Any]:
    """The ``batchEmbedContents`` body."""
    if request.user:
        raise UnsupportedFeatureError("Gemini embeddings take no end-user id.", param="user")
    extra: dict[str, Any] = {}
    if request.HasField("passthrough"):
        for key, value in struct_to_dict(request.passthrough).items():
            if key not in _PASSTHROUGH:
                raise UnsupportedFeatureError(
                    f"Gemini embeddings do not support the request field {key!r}.", param=key
                )
            extra[_PASSTHROUGH[key]] = value
    name = "models/" + model.removeprefix("models/")
    requests = []
    for i, item in enumerate(request.inputs):
        if item.WhichOneof("input") != "text":
            raise UnsupportedFeatureError(
                "Gemini embeds texts only, not token arrays.", param=f"input[{i}]"
            )
        one: dict[str, Any] = {
            "model": name,
            "content": {"parts": [{"text": item.text}], "role": "user"},
        }
        if request.HasField("dimensions"):
            one["outputDimensionality"] = request.dimensions
        one.update(extra)
        requests.append(one)
    return {"requests": requests}


def decode_embed_response(
    body: dict[str, Any], count: int, provider: str
) -> chat_pb2.EmbedResponse:
    """The vectors of a ``batchEmbedContents`` (or ``embedContent``) answer, and its usage."""
    items = body.get("embeddings")
    if items is None and body.get("embedding") is not None:
        items = [body["embedding"]]
    if not isinstance(items, list) or len(items) != count:
        raise UpstreamServerError(
            f"upstream sent no or too few embeddings for {count} inputs",
            provider=provider,
            status=200,
        )
    response = chat_pb2.EmbedResponse()
    for index, item in enumerate(items):
        values = item.get("values") if isinstance(item, dict) else None
        response.embeddings.add(index=index, values=vector_from_wire(values, provider))
    usage = body.get("usageMetadata")
    tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        response.usage.CopyFrom(types_pb2.Usage(input_tokens=tokens))
    return response
