"""OpenAI Chat Completions JSON ↔ ``switchboard.v1`` messages, at the shim's edge.

Request side mirrors ``CreateChatCompletionRequest`` (validated by ``openai_schema``); response
side builds ``chat.completion`` exactly as OpenAI frames it (openai-openapi
``CreateChatCompletionResponse``). The streamed ``chat.completion.chunk`` framing lives in
``openai_stream.py``. Usage, finish reasons, tool-call JSON and the wire enumerations come from the
openai_compat adapter's ``codec``, so each mapping lives once. Switchboard-only facts (route,
attempts, cost) travel in ``x-switchboard-*`` response headers, plus ``usage.cost_usd``.
"""

from __future__ import annotations

from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.http_shim import openai_schema as wire
from server.http_shim.schema import field_error, fill_passthrough, schema_struct
from server.providers.openai_compat.codec import (
    IMAGE_DETAILS,
    RESPONSE_FORMAT_TYPES,
    ROLES,
    TOOL_CHOICE_MODES,
    completion_id,
    finish_reason_json,
    tool_call_json,
    usage_json,
)

Json = dict[str, Any]

# Scalars copied one-to-one when the caller set them (None means unset: OpenAI accepts null).
_SCALARS = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "parallel_tool_calls",
)


# --- request: OpenAI JSON → ChatRequest ----------------------------------------------------


def to_chat_request(body: wire.ChatCompletionRequest) -> chat_pb2.ChatRequest:
    """The contract request for a validated OpenAI body; unknown fields → ``passthrough``."""
    request = chat_pb2.ChatRequest(model=body.model, user=body.user or "")
    tool_names: dict[str, str] = {}
    # Messages are filled in place (`add()`): building them apart and extending copies each one.
    add = request.messages.add
    for index, message in enumerate(body.messages):
        _message(add(), message, index, tool_names)
    for name in _SCALARS:
        value = getattr(body, name)
        if value is not None:
            setattr(request, name, value)
    limit = body.max_completion_tokens
    if limit is None:
        limit = body.max_tokens
    if limit is not None:
        request.max_tokens = limit
    if body.stop is not None:
        request.stop.extend([body.stop] if isinstance(body.stop, str) else body.stop)
    if body.tools:
        for index, tool in enumerate(body.tools):
            _tool(request.tools.add(), tool.function, index)
    choice = body.tool_choice
    if isinstance(choice, str):
        request.tool_choice.mode = TOOL_CHOICE_MODES[choice]
    elif choice is not None:
        request.tool_choice.function_name = choice.function.name
    if body.response_format is not None:
        _response_format(request.response_format, body.response_format)
    if body.model_extra:
        fill_passthrough(request.passthrough, body.model_extra)
    return request


def _message(
    out: types_pb2.Message, m: wire.Message, index: int, tool_names: dict[str, str]
) -> None:
    role = m.role
    out.role = ROLES[role]
    if m.name:
        out.name = m.name
    parts = out.content
    if role == "tool":
        if not m.tool_call_id:
            raise field_error(
                f"messages[{index}].tool_call_id", "a tool message needs tool_call_id"
            )
        result = parts.add().tool_result
        result.tool_call_id = m.tool_call_id
        result.content = _text_only(m.content, index)
        result.name = tool_names.get(m.tool_call_id, "")
        return
    content = m.content
    if isinstance(content, str):
        parts.add(text=content)
    elif content is not None:
        for number, part in enumerate(content):
            if isinstance(part, wire.TextPart):
                parts.add(text=part.text)
            elif isinstance(part, wire.ImagePart) and role == "user":
                image = parts.add().image
                image.url = part.image_url.url
                detail = part.image_url.detail
                if detail is not None:
                    image.detail = IMAGE_DETAILS[detail]
            elif isinstance(part, wire.RefusalPart) and role == "assistant":
                out.refusal += part.refusal
            else:
                raise field_error(
                    f"messages[{index}].content[{number}].type",
                    f"a {role} message cannot contain '{part.type}' content parts",
                )
    if role == "assistant":
        if m.refusal:
            out.refusal = m.refusal
        for call in m.tool_calls or ():
            fn = call.function
            tool_names[call.id] = fn.name
            tool_call = parts.add().tool_call
            tool_call.id = call.id
            tool_call.name = fn.name
            tool_call.arguments = fn.arguments
    elif m.tool_calls:
        raise field_error(
            f"messages[{index}].tool_calls", "only assistant messages can carry tool_calls"
        )


def _text_only(content: str | list[Any] | None, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for number, part in enumerate(content):
        if not isinstance(part, wire.TextPart):
            raise field_error(
                f"messages[{index}].content[{number}].type",
                f"a tool message cannot contain '{part.type}' content parts",
            )
        texts.append(part.text)
    return "".join(texts)


def _tool(tool: types_pb2.Tool, fn: wire.FunctionDef, index: int) -> None:
    tool.name = fn.name
    if fn.description:
        tool.description = fn.description
    if fn.parameters is not None:
        tool.parameters.CopyFrom(
            schema_struct(fn.parameters, f"tools[{index}].function.parameters")
        )
    if fn.strict is not None:
        tool.strict = fn.strict


def _response_format(out: types_pb2.ResponseFormat, rf: Any) -> None:
    out.type = RESPONSE_FORMAT_TYPES[rf.type]
    if isinstance(rf, wire.JsonSchemaFormat):
        spec = rf.json_schema
        out.json_schema.name = spec.name
        out.json_schema.description = spec.description or ""
        if spec.schema_ is not None:
            out.json_schema.schema.CopyFrom(
                schema_struct(spec.schema_, "response_format.json_schema.schema")
            )
        if spec.strict is not None:
            out.json_schema.strict = spec.strict


# --- response: ChatResponse → chat.completion ------------------------------------------------


def message_json(message: types_pb2.Message) -> Json:
    """An assistant message as OpenAI's ``choices[0].message``."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    for part in message.content:
        kind = part.WhichOneof("part")
        if kind == "text":
            texts.append(part.text)
        elif kind == "tool_call":
            call = part.tool_call
            calls.append(tool_call_json(call.id, call.name, call.arguments))
        elif kind == "reasoning" and part.reasoning.text:
            reasoning.append(part.reasoning.text)
    # OpenAI sends content null (not "") when the turn is only tool calls or a refusal.
    content = "".join(texts) if texts else (None if calls or message.refusal else "")
    out: Json = {
        "role": "assistant",
        "content": content,
        "refusal": message.refusal or None,
    }
    if calls:
        out["tool_calls"] = calls
    if reasoning:
        # DeepSeek's field for reasoning text in Chat Completions; OpenAI itself sends none.
        out["reasoning_content"] = "".join(reasoning)
    return out


def completion_json(response: chat_pb2.ChatResponse) -> Json:
    """A ``chat.completion`` object; the id is ``chatcmpl-<request id>``."""
    return {
        "id": completion_id(response.id),
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": message_json(response.message),
                "logprobs": None,
                "finish_reason": finish_reason_json(response.finish_reason),
            }
        ],
        "usage": usage_json(response.usage, response.cost),
        "system_fingerprint": None,
    }


def models_json(models: chat_pb2.ListModelsResponse) -> Json:
    """``GET /v1/models``: OpenAI's ``list`` of ``model`` objects."""
    return {"object": "list", "data": [model_json(m) for m in models.models]}


def model_json(model: chat_pb2.Model) -> Json:
    """One OpenAI ``model`` object (``GET /v1/models/{id}``)."""
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider or "switchboard",
    }
