"""``switchboard.v1.ChatRequest`` → OpenAI Chat Completions request JSON.

Mirrors the request side of the OpenAI Chat Completions API (``CreateChatCompletionRequest`` in
openai-openapi). Vendor wire types stay in this package; the output is a plain dict that the
provider serialises with orjson.
"""

from __future__ import annotations

from collections.abc import Iterable

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError
from server.providers.codec import Json, copy_set_fields, struct_to_dict
from server.providers.openai_compat.codec import (
    WIRE_REASONING_EFFORTS,
    WIRE_ROLES,
    WIRE_TOOL_CHOICE_MODES,
    image_url_json,
    tool_call_json,
)

# Fields the adapter owns: a passthrough that set them would bypass routing, billing or the
# stream decoder, so it is refused rather than merged.
RESERVED_PASSTHROUGH = frozenset({"model", "messages", "stream", "stream_options"})
# Optional scalars sent under the same name when the caller set them.
_SAMPLING = {
    name: name for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
}


def encode_request(
    request: chat_pb2.ChatRequest,
    model: str,
    *,
    stream: bool,
    max_tokens_field: str = "max_tokens",
    send_reasoning: bool = False,
) -> Json:
    """The Chat Completions body for ``request`` against upstream model ``model``.

    ``max_tokens_field`` names the length limit the upstream understands (``max_tokens`` or
    ``max_completion_tokens``); ``send_reasoning`` sends assistant reasoning back as
    ``reasoning_content`` (DeepSeek requires it on tool-call turns; OpenAI rejects it).
    """
    body: Json = {"model": model, "messages": encode_messages(request.messages, send_reasoning)}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.HasField("parallel_tool_calls"):
            body["parallel_tool_calls"] = request.parallel_tool_calls
    choice = request.tool_choice.WhichOneof("choice")
    if choice == "mode" and request.tool_choice.mode in WIRE_TOOL_CHOICE_MODES:
        body["tool_choice"] = WIRE_TOOL_CHOICE_MODES[request.tool_choice.mode]
    elif choice == "function_name":
        body["tool_choice"] = {
            "type": "function",
            "function": {"name": request.tool_choice.function_name},
        }
    if request.HasField("response_format"):
        response_format = _response_format(request.response_format)
        if response_format is not None:
            body["response_format"] = response_format
    copy_set_fields(request, body, _SAMPLING)
    if request.HasField("max_tokens"):
        body[max_tokens_field] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.HasField("n"):
        if request.n != 1:
            raise UnsupportedFeatureError("only n=1 is supported", param="n")
        body["n"] = 1
    if request.user:
        body["user"] = request.user
    effort = WIRE_REASONING_EFFORTS.get(request.reasoning_effort)
    if effort is not None:
        body["reasoning_effort"] = effort
    if stream:
        body["stream"] = True
        # Usage is always requested so streamed requests are billed exactly (DESIGN.md).
        body["stream_options"] = {"include_usage": True}
    if request.HasField("passthrough"):
        extra = struct_to_dict(request.passthrough)
        clash = RESERVED_PASSTHROUGH.intersection(extra)
        if clash:
            name = sorted(clash)[0]
            raise InvalidRequestError(
                f"passthrough may not set '{name}'", param=f"passthrough.{name}"
            )
        body.update(extra)
    return body


def encode_messages(
    messages: Iterable[types_pb2.Message], send_reasoning: bool = False
) -> list[Json]:
    """Contract messages → OpenAI messages; one tool result becomes one ``tool`` message."""
    out: list[Json] = []
    for index, message in enumerate(messages):
        role = WIRE_ROLES.get(message.role)
        if role is None:
            raise InvalidRequestError("message role is required", param=f"messages[{index}].role")
        if role == "assistant":
            out.append(_assistant(message, index, send_reasoning))
            continue
        rest: list[types_pb2.ContentPart] = []
        for part in message.content:
            if part.WhichOneof("part") == "tool_result":
                result = part.tool_result
                out.append(
                    {"role": "tool", "tool_call_id": result.tool_call_id, "content": result.content}
                )
            else:
                rest.append(part)
        if role == "tool":
            if rest:
                raise InvalidRequestError(
                    "a tool message carries only tool results", param=f"messages[{index}].content"
                )
            continue
        if not rest and any(p.WhichOneof("part") == "tool_result" for p in message.content):
            continue
        entry: Json = {"role": role, "content": _content(rest, role, index)}
        if message.name:
            entry["name"] = message.name
        out.append(entry)
    return out


def _content(parts: list[types_pb2.ContentPart], role: str, index: int) -> str | list[Json]:
    if not parts:
        return ""
    if len(parts) == 1 and parts[0].WhichOneof("part") == "text":
        return parts[0].text
    items: list[Json] = []
    for number, part in enumerate(parts):
        kind = part.WhichOneof("part")
        if kind == "text":
            items.append({"type": "text", "text": part.text})
        elif kind == "image" and role == "user":
            items.append(image_url_json(part.image, f"messages[{index}].content[{number}]"))
        else:
            raise UnsupportedFeatureError(
                f"a {role} message cannot carry {kind or 'empty'} content here",
                param=f"messages[{index}].content[{number}]",
            )
    return items


def _assistant(message: types_pb2.Message, index: int, send_reasoning: bool) -> Json:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    for number, part in enumerate(message.content):
        kind = part.WhichOneof("part")
        if kind == "text":
            texts.append(part.text)
        elif kind == "tool_call":
            call = part.tool_call
            calls.append(tool_call_json(call.id, call.name, call.arguments or "{}"))
        elif kind == "reasoning":
            # Chat Completions has no reasoning input; only DeepSeek-style upstreams take it.
            reasoning.append(part.reasoning.text)
        else:
            raise UnsupportedFeatureError(
                f"an assistant message cannot carry {kind or 'empty'} content",
                param=f"messages[{index}].content[{number}]",
            )
    entry: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        entry["tool_calls"] = calls
    if message.name:
        entry["name"] = message.name
    if message.refusal:
        entry["refusal"] = message.refusal
    if send_reasoning and reasoning:
        entry["reasoning_content"] = "".join(reasoning)
    return entry


def _tool(tool: types_pb2.Tool) -> Json:
    function = _described_schema({"name": tool.name}, tool, "parameters")
    return {"type": "function", "function": function}


def _described_schema(
    out: Json, source: types_pb2.Tool | types_pb2.JsonSchema, schema_field: str
) -> Json:
    """A tool's ``function`` or a ``json_schema`` entry: description, schema and strict, each
    only when set."""
    if source.description:
        out["description"] = source.description
    if source.HasField(schema_field):
        out[schema_field] = struct_to_dict(getattr(source, schema_field))
    if source.HasField("strict"):
        out["strict"] = source.strict
    return out


def _response_format(response_format: types_pb2.ResponseFormat) -> Json | None:
    kind = response_format.type
    if kind == types_pb2.RESPONSE_FORMAT_TYPE_TEXT:
        return {"type": "text"}
    if kind == types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return {"type": "json_object"}
    if kind == types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        spec = response_format.json_schema
        schema = _described_schema({"name": spec.name or "response"}, spec, "schema")
        return {"type": "json_schema", "json_schema": schema}
    return None
