"""Anthropic Messages API JSON ⇄ ``switchboard.v1`` (the inbound ``/v1/messages`` edge).

Request (``decode_request``: ``anthropic_schema`` validates, ``to_chat_request`` converts):
``system`` (a string or text blocks) → one ROLE_SYSTEM message; user/assistant ``content`` (a
string or blocks) → contract parts: ``text``, ``image`` (a base64 source → bytes + media_type, a
url source → url), ``tool_use`` → ToolCall (arguments = the JSON of ``input``), ``thinking`` /
``redacted_thinking`` → ReasoningPart, and each ``tool_result`` → one ROLE_TOOL message, in
order, ahead of the user's other content of that turn (the order OpenAI-style upstreams
require). ``tools``, ``tool_choice`` (any → REQUIRED, tool → function name,
``disable_parallel_tool_use`` → parallel_tool_calls=false), ``max_tokens`` (required, as
Anthropic requires it), ``temperature``, ``top_p``, ``stop_sequences``, ``metadata.user_id`` →
user, ``output_config.format`` (json_schema) → response_format; ``top_k`` and every unknown
field travel in ``passthrough``. ``cache_control`` markers on blocks and tools are accepted and
ignored: the contract has no per-block cache hint, and they never change what a model answers.
Blocks, image sources and tools the contract cannot carry are refused (UnsupportedFeatureError).

Response (``encode_response``) and errors (``encode_error``): contract → Anthropic JSON; the
stream's SSE events are ``anthropic_stream``'s. Usage, stop reasons, tool inputs and ids are the
Anthropic adapter's ``codec`` (Anthropic's ``input_tokens`` EXCLUDES cache reads and writes;
arguments that are not a JSON object become ``{"_raw_arguments": "<text>"}``; a stop is always
``end_turn`` and ``stop_sequence`` null, as the contract does not say which sequence matched).
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import GatewayError, UnsupportedFeatureError
from server.core.secrets import scrub
from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.http_shim import anthropic_schema as wire
from server.http_shim.schema import (
    INT32,
    TOO_DEEP,
    field_error,
    fill_passthrough,
    schema_struct,
)
from server.providers.anthropic.codec import (
    arguments_text,
    fill_image,
    message_id,
    stop_reason,
    tool_input,
    tool_use_id,
    tool_use_json,
    usage_json,
)
from server.providers.codec import too_deep

_R = types_pb2
Json = dict[str, Any]

_TOOL_CHOICE_MODES = {
    "auto": _R.TOOL_CHOICE_MODE_AUTO,
    "any": _R.TOOL_CHOICE_MODE_REQUIRED,
    "none": _R.TOOL_CHOICE_MODE_NONE,
}

# HTTP status → Anthropic error type (docs.claude.com/en/api/errors, anthropic-python ErrorType).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# --- request --------------------------------------------------------------------------------


def decode_request(
    body: bytes, bounds: RequestBounds = DEFAULT_BOUNDS
) -> tuple[chat_pb2.ChatRequest, bool]:
    """A ``ChatRequest`` and the ``stream`` flag from a Messages API request body."""
    request = wire.parse_messages_request(body, bounds)
    return to_chat_request(request), bool(request.stream)


def decode_count_request(
    body: bytes, bounds: RequestBounds = DEFAULT_BOUNDS
) -> chat_pb2.ChatRequest:
    """The ``ChatRequest`` of a ``/v1/messages/count_tokens`` body: a Messages body without
    ``max_tokens`` (and never streamed)."""
    parsed = wire.parse_messages_request(body, bounds, defaults={"max_tokens": 1})
    request = to_chat_request(parsed)
    request.ClearField("max_tokens")
    return request


def to_chat_request(body: wire.MessagesRequest) -> chat_pb2.ChatRequest:
    """The contract request for a validated Messages body; unknown fields → ``passthrough``."""
    # Anthropic allows larger limits than the contract's int32 holds; no model answers more.
    request = chat_pb2.ChatRequest(model=body.model, max_tokens=min(body.max_tokens, INT32))
    messages = request.messages
    if body.system is not None:
        text = _system_text(body.system)
        if text:
            messages.add(role=_R.ROLE_SYSTEM).content.add(text=text)
    tool_names: dict[str, str] = {}
    for i, message in enumerate(body.messages):
        _message(message, f"messages[{i}]", messages, tool_names)
    if body.temperature is not None:
        request.temperature = body.temperature
    if body.top_p is not None:
        request.top_p = body.top_p
    if body.stop_sequences:
        request.stop.extend(body.stop_sequences)
    if body.metadata is not None and body.metadata.user_id is not None:
        request.user = body.metadata.user_id
    for i, tool in enumerate(body.tools or ()):
        _tool(tool, f"tools[{i}]", request.tools.add())
    if body.tool_choice is not None:
        _tool_choice(body.tool_choice, request)
    passthrough = dict(body.model_extra or {})
    if "output_config" in body.model_fields_set:
        _output_config(body.output_config, request, passthrough)
    if passthrough:
        fill_passthrough(request.passthrough, passthrough)
    return request


def _system_text(system: str | list[wire.TextBlock]) -> str:
    if isinstance(system, str):
        return system
    # Anthropic concatenates system blocks; a blank line keeps them apart for any upstream.
    return "\n\n".join(block.text for block in system if block.text)


def _message(message: wire.Message, param: str, messages: Any, tool_names: dict[str, str]) -> None:
    content = message.content
    user = message.role == "user"
    if isinstance(content, str):
        messages.add(role=_R.ROLE_USER if user else _R.ROLE_ASSISTANT).content.add(text=content)
        return
    if not user:
        parts = messages.add(role=_R.ROLE_ASSISTANT).content
        for j, block in enumerate(content):
            _assistant_block(block, f"{param}.content[{j}]", parts, tool_names)
        return
    turn = types_pb2.Message(role=_R.ROLE_USER)
    for j, block in enumerate(content):
        bparam = f"{param}.content[{j}]"
        if isinstance(block, wire.ToolResultBlock):
            result = messages.add(role=_R.ROLE_TOOL).content.add().tool_result
            _tool_result(block, bparam, result, tool_names)
        else:
            _user_block(block, bparam, turn.content)
    if turn.content:
        messages.append(turn)


def _user_block(block: Any, param: str, parts: Any) -> None:
    if isinstance(block, wire.TextBlock):
        parts.add(text=block.text)
    elif isinstance(block, wire.ImageBlock):
        _image(block.source, param, parts.add().image)
    else:
        raise _unsupported_block(block, param, "user")


def _assistant_block(block: Any, param: str, parts: Any, tool_names: dict[str, str]) -> None:
    if isinstance(block, wire.TextBlock):
        parts.add(text=block.text)
    elif isinstance(block, wire.ToolUseBlock):
        if too_deep(block.input):
            raise field_error(f"{param}.input", TOO_DEEP)
        tool_names[block.id] = block.name
        call = parts.add().tool_call
        call.id = block.id
        call.name = block.name
        call.arguments = arguments_text(block.input)
    elif isinstance(block, wire.ThinkingBlock):
        reasoning = parts.add().reasoning
        reasoning.text = block.thinking
        if block.signature is not None:
            reasoning.signature = block.signature
    elif isinstance(block, wire.RedactedThinkingBlock):
        parts.add().reasoning.redacted_data = block.data
    else:
        raise _unsupported_block(block, param, "assistant")


def _unsupported_block(block: Any, param: str, role: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(
        f"{param}: content blocks of type {block.type!r} are not supported in {role} messages",
        param=param,
    )


def _image(source: Any, param: str, image: types_pb2.ImagePart) -> None:
    if isinstance(source, wire.Base64Source):
        fill_image(image, media_type=source.media_type, data=source.data)
    elif isinstance(source, wire.UrlSource):
        fill_image(image, url=source.url)
    else:
        raise UnsupportedFeatureError(
            f"{param}.source: image sources of type {source.type!r} are not supported",
            param=f"{param}.source.type",
        )


def _tool_result(
    block: wire.ToolResultBlock,
    param: str,
    result: types_pb2.ToolResult,
    tool_names: dict[str, str],
) -> None:
    result.tool_call_id = block.tool_use_id
    name = tool_names.get(block.tool_use_id)
    if name:
        result.name = name
    content = block.content
    if isinstance(content, str):
        result.content = content
    elif content is not None:
        texts = []
        for k, inner in enumerate(content):
            if not isinstance(inner, wire.TextBlock):
                iparam = f"{param}.content[{k}]"
                raise UnsupportedFeatureError(
                    f"{iparam}: tool results can only hold text here", param=iparam
                )
            texts.append(inner.text)
        result.content = "\n".join(texts)
    if block.is_error is not None:
        result.is_error = block.is_error


def _tool(raw: wire.ClientTool | wire.ServerTool, param: str, tool: types_pb2.Tool) -> None:
    if isinstance(raw, wire.ServerTool):
        raise UnsupportedFeatureError(
            f"{param}: server tools ({raw.type!r}) are not supported; declare client tools "
            "with name, description and input_schema",
            param=f"{param}.type",
        )
    tool.name = raw.name
    if raw.description is not None:
        tool.description = raw.description
    if raw.input_schema:
        # An empty schema stays unset, so adapters send their default object schema.
        tool.parameters.CopyFrom(schema_struct(raw.input_schema, f"{param}.input_schema"))
    if raw.strict is not None:
        tool.strict = raw.strict


def _tool_choice(choice: wire.ToolChoice, request: chat_pb2.ChatRequest) -> None:
    if choice.type == "tool":
        if not choice.name:
            raise field_error("tool_choice.name", "this field is required")
        request.tool_choice.function_name = choice.name
    else:
        request.tool_choice.mode = _TOOL_CHOICE_MODES[choice.type]
    if choice.disable_parallel_tool_use is not None:
        request.parallel_tool_calls = not choice.disable_parallel_tool_use


def _output_config(config: Any, request: chat_pb2.ChatRequest, passthrough: Json) -> None:
    """Maps a ``json_schema`` format to response_format; the rest of ``output_config`` (or all
    of it, as the caller sent it, when it has no such format) goes to passthrough."""
    if not isinstance(config, wire.OutputConfig):
        passthrough["output_config"] = config
        return
    rest = dict(config.model_extra or {})
    fmt = config.format
    if not isinstance(fmt, wire.JsonSchemaFormat):
        if "format" in config.model_fields_set:
            rest["format"] = fmt
        passthrough["output_config"] = rest
        return
    if rest:
        passthrough["output_config"] = rest
    rf = request.response_format
    rf.type = _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    # The contract (like OpenAI) names every schema; Anthropic's are anonymous.
    rf.json_schema.name = "output"
    if fmt.schema_:
        # An empty schema stays unset, so the adapter sends its default object schema.
        rf.json_schema.schema.CopyFrom(schema_struct(fmt.schema_, "output_config.format.schema"))


# --- response -------------------------------------------------------------------------------


def response_json(response: chat_pb2.ChatResponse) -> Json:
    """The Messages API response object for a finished completion."""
    content: list[Json] = []
    has_tools = False
    for part in response.message.content:
        kind = part.WhichOneof("part")
        if kind == "text":
            if content and content[-1]["type"] == "text":
                content[-1]["text"] += part.text
            else:
                content.append({"type": "text", "text": part.text})
        elif kind == "tool_call":
            has_tools = True
            call = part.tool_call
            content.append(
                tool_use_json(tool_use_id(call.id), call.name, tool_input(call.arguments))
            )
        elif kind == "reasoning":
            r = part.reasoning
            if r.redacted_data:
                content.append({"type": "redacted_thinking", "data": r.redacted_data})
            else:
                content.append({"type": "thinking", "thinking": r.text, "signature": r.signature})
    if response.message.refusal and not any(c["type"] == "text" for c in content):
        content.append({"type": "text", "text": response.message.refusal})
    return {
        "id": message_id(response.id),
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason(response.finish_reason, has_tools),
        "stop_sequence": None,
        "usage": usage_json(response.usage),
    }


def encode_response(response: chat_pb2.ChatResponse) -> bytes:
    """The Messages API response body for a finished completion."""
    return orjson.dumps(response_json(response))


# --- errors ---------------------------------------------------------------------------------


def error_type(status: int) -> str:
    """Anthropic error type for an HTTP status."""
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_json(status: int, message: str, request_id: str | None = None) -> Json:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    error = {"type": error_type(status), "message": scrub(message)}
    body: Json = {"type": "error", "error": error}
    if request_id:
        body["request_id"] = request_id
    return body


def encode_error(exc: GatewayError, request_id: str | None = None) -> bytes:
    """The JSON error body for a gateway error."""
    return orjson.dumps(error_json(exc.http_status, exc.message, request_id))
