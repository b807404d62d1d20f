"""The demo provider: an offline, deterministic model so Switchboard can be tried without keys.

It is not a language model. ``demo/echo`` answers ``Echo: <your last message>`` word by word;
given tools (and a tool_choice other than none) it calls the first tool, or the named one, with
arguments built from the schema's required properties; after a tool result it says what the
tool returned. It honours ``max_tokens`` (finish ``length``), ``stop`` sequences, JSON mode and
JSON schemas (a valid object built from the schema). Tokens are whitespace-separated words, for
usage and for ``max_tokens`` alike; tool-call arguments are never truncated. No network, no
cost. What it cannot honour is refused with ``UnsupportedFeatureError``, never ignored: any
field the contract does not model (``logprobs``, ``logit_bias``... in ``passthrough``) and a
reasoning effort other than ``none``.

``demo/embed`` embeds texts (or token arrays) offline: each word (token id) is hashed to one of
``dimensions`` positions (default 256) with a sign, the counts are normalised to unit length, so
texts that share words have a positive cosine similarity and the same text always gets the same
vector. Usage counts words.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError, UpstreamNotFoundError
from server.providers.base import Capability, UpstreamCall
from server.providers.codec import struct_to_dict

# Model id (without the `demo/` prefix) → description shown by ListModels.
MODELS = {
    "echo": (
        "Demo model (offline, not a real LLM, free): echoes your last message word by word, "
        "calls your first tool when given tools, and answers JSON mode with a JSON object."
    ),
    "embed": (
        "Demo embedding model (offline, deterministic, free): hashed bag-of-words vectors of "
        "unit length, 256 dimensions unless `dimensions` says otherwise."
    ),
}
EMBED_MODEL = "embed"
EMBED_DIMENSIONS = 256
# Largest `dimensions` the demo embedding model makes.
MAX_EMBED_DIMENSIONS = 8192
ECHO_PREFIX = "Echo: "
# What a request without max_tokens reserves for the demo model's answer.
MAX_OUTPUT_TOKENS = 4096
_PIECES = re.compile(r"\s*\S+")


@dataclass(slots=True)
class _Answer:
    text: str = ""
    calls: list[types_pb2.ToolCall] = field(default_factory=list)
    finish: types_pb2.FinishReason = types_pb2.FINISH_REASON_STOP
    usage: types_pb2.Usage = field(default_factory=types_pb2.Usage)


class DemoProvider:
    """The offline demo model (implements ``server.providers.base.Provider``)."""

    kind = "demo"
    capabilities = frozenset(
        {
            Capability.TEXT,
            Capability.STREAM,
            Capability.TOOLS,
            Capability.STREAM_TOOLS,
            Capability.JSON_MODE,
            Capability.JSON_SCHEMA,
            Capability.IMAGES,
            Capability.MAX_TOKENS,
            Capability.EMBEDDINGS,
        }
    )
    models = MODELS

    def __init__(self, name: str = "demo", *, word_delay: float = 0.0) -> None:
        self.name = name
        # Seconds between streamed words, to make a demo stream visible; 0 in tests.
        self.word_delay = word_delay

    def __repr__(self) -> str:
        return f"DemoProvider(name={self.name!r})"

    def max_output_tokens(self, model: str) -> int:
        """The demo answers with at most the last user message, word by word."""
        return MAX_OUTPUT_TOKENS

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        """One deterministic completion."""
        answer = self._answer(request, call)
        message = types_pb2.Message(role=types_pb2.ROLE_ASSISTANT)
        if answer.text:
            message.content.add().text = answer.text
        for tool_call in answer.calls:
            message.content.add().tool_call.CopyFrom(tool_call)
        return chat_pb2.ChatResponse(
            message=message, finish_reason=answer.finish, usage=answer.usage
        )

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """The same answer, one word per frame, then the ``end`` frame."""
        answer = self._answer(request, call)
        for piece in _PIECES.findall(answer.text):
            if self.word_delay:
                await asyncio.sleep(self.word_delay)
            yield chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=piece))
        for index, tool_call in enumerate(answer.calls):
            yield chat_pb2.StreamChatResponse(
                tool_call=chat_pb2.ToolCallDelta(index=index, id=tool_call.id, name=tool_call.name)
            )
            for piece in _PIECES.findall(tool_call.arguments):
                yield chat_pb2.StreamChatResponse(
                    tool_call=chat_pb2.ToolCallDelta(index=index, arguments=piece)
                )
        yield chat_pb2.StreamChatResponse(
            end=chat_pb2.StreamEnd(finish_reason=answer.finish, usage=answer.usage)
        )

    async def embed(
        self, request: chat_pb2.EmbedRequest, call: UpstreamCall
    ) -> chat_pb2.EmbedResponse:
        """Deterministic hashed bag-of-words vectors (module docstring)."""
        self._known(call.model)
        if call.model != EMBED_MODEL:
            raise UnsupportedFeatureError(
                f"demo/{call.model} is a chat model; embed with demo/{EMBED_MODEL}", param="model"
            )
        if request.HasField("passthrough") and request.passthrough.fields:
            raise _unsupported_fields(sorted(request.passthrough.fields))
        size = request.dimensions if request.HasField("dimensions") else EMBED_DIMENSIONS
        if size > MAX_EMBED_DIMENSIONS:
            raise UnsupportedFeatureError(
                f"demo/{EMBED_MODEL} makes at most {MAX_EMBED_DIMENSIONS} dimensions",
                param="dimensions",
            )
        response = chat_pb2.EmbedResponse()
        words = 0
        for index, item in enumerate(request.inputs):
            if item.WhichOneof("input") == "tokens":
                features = [str(token) for token in item.tokens.ids]
            else:
                features = item.text.lower().split() or [item.text]
            words += len(features)
            response.embeddings.add(index=index, values=_hashed_vector(features, size))
        response.usage.input_tokens = words
        return response

    async def aclose(self) -> None:
        """Nothing to release."""

    # --- the deterministic "model" ----------------------------------------------------------

    def _known(self, model: str) -> None:
        if model not in MODELS:
            raise UpstreamNotFoundError(
                f"the demo provider has no model '{model}' (try demo/echo or demo/embed)",
                provider=self.name,
                status=404,
            )

    def _answer(self, request: chat_pb2.ChatRequest, call: UpstreamCall) -> _Answer:
        self._known(call.model)
        if call.model == EMBED_MODEL:
            raise UnsupportedFeatureError(
                f"demo/{EMBED_MODEL} is an embedding model (POST /v1/embeddings); chat with "
                "demo/echo",
                param="model",
            )
        if request.HasField("n") and request.n != 1:
            raise UnsupportedFeatureError("only n=1 is supported", param="n")
        if request.HasField("passthrough") and request.passthrough.fields:
            raise _unsupported_fields(sorted(request.passthrough.fields))
        if request.reasoning_effort not in (
            types_pb2.REASONING_EFFORT_UNSPECIFIED,
            types_pb2.REASONING_EFFORT_NONE,
        ):
            raise UnsupportedFeatureError(
                "the demo model does not reason; reasoning effort cannot be honoured",
                param="reasoning_effort",
            )
        answer = _Answer()
        results = _trailing_tool_results(request.messages)
        choice = request.tool_choice
        wants_tool = bool(request.tools) and not (
            choice.WhichOneof("choice") == "mode" and choice.mode == types_pb2.TOOL_CHOICE_MODE_NONE
        )
        if results:
            answer.text = " ".join(
                f"The tool {_tool_name(request.messages, r)} returned: {r.content}" for r in results
            )
        elif wants_tool:
            answer.calls.append(_tool_call(request))
            answer.finish = types_pb2.FINISH_REASON_TOOL_CALLS
        else:
            answer.text = ECHO_PREFIX + (_last_user_text(request.messages) or "(nothing to echo)")
        if not answer.calls:
            answer.text = _formatted(request, answer.text)
            answer.text, answer.finish = _limited(request, answer.text)
        output = sum(len(c.arguments.split()) for c in answer.calls) + len(answer.text.split())
        answer.usage = types_pb2.Usage(
            input_tokens=_prompt_words(request.messages), output_tokens=output
        )
        return answer


def _unsupported_fields(names: list[str]) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(
        "The demo provider cannot honour these request fields: " + ", ".join(names),
        param=names[0],
    )


def _hashed_vector(features: list[str], size: int) -> list[float]:
    """Feature hashing: each feature adds ±1 at a position its hash picks; unit length."""
    vector = [0.0] * size
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        number = int.from_bytes(digest, "little")
        vector[number % size] += 1.0 if number >> 63 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        # Features that cancelled out: still a deterministic unit vector.
        vector[0] = 1.0
        return vector
    return [x / norm for x in vector]


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages):
        if message.role == types_pb2.ROLE_USER:
            texts = []
            for part in message.content:
                kind = part.WhichOneof("part")
                if kind == "text":
                    texts.append(part.text)
                elif kind == "image":
                    texts.append("[image]")
            return " ".join(texts)
    return ""


def _trailing_tool_results(messages: Any) -> list[types_pb2.ToolResult]:
    if not messages:
        return []
    return [
        part.tool_result
        for part in messages[-1].content
        if part.WhichOneof("part") == "tool_result"
    ]


def _tool_name(messages: Any, result: types_pb2.ToolResult) -> str:
    if result.name:
        return result.name
    for message in messages:
        for part in message.content:
            if part.WhichOneof("part") == "tool_call" and part.tool_call.id == result.tool_call_id:
                return part.tool_call.name
    return result.tool_call_id or "tool"


def _tool_call(request: chat_pb2.ChatRequest) -> types_pb2.ToolCall:
    tool = request.tools[0]
    if request.tool_choice.WhichOneof("choice") == "function_name":
        wanted = request.tool_choice.function_name
        named = [t for t in request.tools if t.name == wanted]
        if not named:
            raise InvalidRequestError(
                f"tool_choice names '{wanted}', which is not among the tools",
                param="tool_choice",
            )
        tool = named[0]
    schema = struct_to_dict(tool.parameters) if tool.HasField("parameters") else {}
    earlier = sum(
        1
        for message in request.messages
        for part in message.content
        if part.WhichOneof("part") == "tool_call"
    )
    arguments = _example(schema, _last_user_text(request.messages), required_only=True)
    return types_pb2.ToolCall(
        id=f"call_demo_{earlier}",
        name=tool.name,
        arguments=orjson.dumps(arguments if isinstance(arguments, dict) else {}).decode(),
    )


def _example(schema: Any, text: str, *, required_only: bool) -> Any:
    """A deterministic value that satisfies the common subset of JSON Schema."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _example(options[0], text, required_only=required_only)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        raw_properties = schema.get("properties")
        properties: dict[str, Any] = raw_properties if isinstance(raw_properties, dict) else {}
        raw_required = schema.get("required")
        required: list[Any] = raw_required if isinstance(raw_required, list) else []
        names = [n for n in properties if n in required] if required_only else list(properties)
        return {
            name: _example(properties[name], text, required_only=required_only) for name in names
        }
    if kind == "array":
        items = schema.get("items")
        count = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        return [_example(items, text, required_only=required_only) for _ in range(count)]
    if kind == "string":
        return text or "demo"
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    return None


def _formatted(request: chat_pb2.ChatRequest, text: str) -> str:
    kind = request.response_format.type
    if kind == types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return orjson.dumps({"echo": text}).decode()
    if kind == types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        spec = request.response_format.json_schema
        schema = struct_to_dict(spec.schema) if spec.HasField("schema") else {"type": "object"}
        value = _example(schema, text, required_only=False)
        return orjson.dumps(value if value is not None else {}).decode()
    return text


def _limited(request: chat_pb2.ChatRequest, text: str) -> tuple[str, types_pb2.FinishReason]:
    cut = min((i for i in (text.find(s) for s in request.stop if s) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    if request.HasField("max_tokens"):
        pieces = _PIECES.findall(text)
        if len(pieces) > request.max_tokens:
            return "".join(pieces[: max(request.max_tokens, 0)]), types_pb2.FINISH_REASON_LENGTH
    return text, types_pb2.FINISH_REASON_STOP


def _prompt_words(messages: Any) -> int:
    count = 0
    for message in messages:
        for part in message.content:
            kind = part.WhichOneof("part")
            if kind == "text":
                count += len(part.text.split())
            elif kind == "tool_result":
                count += len(part.tool_result.content.split())
            elif kind == "tool_call":
                count += len(part.tool_call.arguments.split())
            elif kind == "image":
                count += 1
    return count
