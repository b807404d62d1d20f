"""``switchboard.v1.ChatRequest`` → Gemini ``generateContent`` request body (v1beta).

Mapping (anything the API cannot express raises ``UnsupportedFeatureError``):
- system and developer messages → ``systemInstruction``; user → role ``user``, assistant →
  role ``model``, tool results → ``functionResponse`` parts in a ``user`` turn; consecutive
  turns of the same role are merged (parallel calls' results go back in one turn);
- tool calls → ``functionCall`` parts (with their ``thoughtSignature``), tool results are
  matched to their call by name (``ToolResult.name`` or the earlier call's name) and sent as
  ``{"output": …}`` or, for errors, ``{"error": …}``, the keys the API documents;
- reasoning → ``thought`` parts; a bare signature (the ``thoughtSignature`` Gemini put on a
  text part) goes back on the part before it, where the decoder found it;
- images → ``inlineData`` (bytes, data: URLs) or ``fileData`` (http(s) URLs; needs a MIME type,
  given or guessed from the URL); ``detail`` (an OpenAI quality hint) is not sent;
- ``generationConfig``: temperature, topP, maxOutputTokens, stopSequences, seed, presence and
  frequency penalties, and ``responseMimeType`` + ``responseJsonSchema`` for JSON output;
- ``n`` > 1, participant names, ``strict`` tools and ``parallel_tool_calls: false`` are
  refused; ``user`` is not forwarded (the API has no such field);
- tools → ``functionDeclarations`` with ``parametersJsonSchema`` (full JSON Schema);
  ``tool_choice`` → ``toolConfig.functionCallingConfig`` (AUTO / NONE / ANY, named → ANY with
  ``allowedFunctionNames``);
- passthrough fields mapped knowingly: ``top_k`` → ``generationConfig.topK``,
  ``thinking_config`` → ``generationConfig.thinkingConfig``, ``cached_content`` →
  ``cachedContent``, ``safety_settings`` → ``safetySettings`` (camelCase spellings accepted).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError
from server.providers.codec import (
    copy_set_fields,
    image_source,
    struct_to_dict,
    system_texts,
    tool_arguments,
)

_R = types_pb2
# Contract scalars → their generationConfig names, sent when the caller set them.
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxOutputTokens",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}

# Passthrough key (both spellings) → (where it goes, its API name).
_PASSTHROUGH: dict[str, tuple[str, str]] = {
    "top_k": ("generationConfig", "topK"),
    "topK": ("generationConfig", "topK"),
    "thinking_config": ("generationConfig", "thinkingConfig"),
    "thinkingConfig": ("generationConfig", "thinkingConfig"),
    "cached_content": ("", "cachedContent"),
    "cachedContent": ("", "cachedContent"),
    "safety_settings": ("", "safetySettings"),
    "safetySettings": ("", "safetySettings"),
}
PASSTHROUGH_FIELDS = frozenset(_PASSTHROUGH)
# Reasoning effort → thinkingConfig.thinkingBudget (tokens; 0 turns thinking off).
THINKING_BUDGETS = {
    _R.REASONING_EFFORT_NONE: 0,
    _R.REASONING_EFFORT_MINIMAL: 512,
    _R.REASONING_EFFORT_LOW: 1024,
    _R.REASONING_EFFORT_MEDIUM: 8192,
    _R.REASONING_EFFORT_HIGH: 24576,
    _R.REASONING_EFFORT_XHIGH: 32768,
}


def encode_request(request: chat_pb2.ChatRequest) -> dict[str, Any]:
    """The ``generateContent`` / ``streamGenerateContent`` body for ``request``."""
    body: dict[str, Any] = {}
    system, contents = _encode_messages(request.messages)
    body["contents"] = contents
    if system:
        body["systemInstruction"] = {"parts": system}
    config = _generation_config(request)
    if request.tools:
        body["tools"] = [{"functionDeclarations": _declarations(request)}]
    tool_config = _tool_config(request)
    if tool_config:
        body["toolConfig"] = tool_config
    _passthrough(request, body, config)
    if config:
        body["generationConfig"] = config
    return body


def _generation_config(request: chat_pb2.ChatRequest) -> dict[str, Any]:
    if request.HasField("n") and request.n != 1:
        raise UnsupportedFeatureError("Only n=1 is supported.", param="n")
    config: dict[str, Any] = {}
    copy_set_fields(request, config, _GENERATION)
    if request.stop:
        config["stopSequences"] = list(request.stop)
    rf = request.response_format
    if rf.type == _R.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        config["responseMimeType"] = "application/json"
    elif rf.type == _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        config["responseMimeType"] = "application/json"
        if rf.json_schema.HasField("schema"):
            config["responseJsonSchema"] = struct_to_dict(rf.json_schema.schema)
    budget = THINKING_BUDGETS.get(request.reasoning_effort)
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return config


def _passthrough(
    request: chat_pb2.ChatRequest, body: dict[str, Any], config: dict[str, Any]
) -> None:
    if not request.HasField("passthrough") or not request.passthrough.fields:
        return
    extra = struct_to_dict(request.passthrough)
    unknown = sorted(k for k in extra if k not in _PASSTHROUGH)
    if unknown:
        raise UnsupportedFeatureError(
            "Gemini does not support these request fields: " + ", ".join(unknown),
            param=unknown[0],
        )
    for key, value in extra.items():
        where, name = _PASSTHROUGH[key]
        (config if where else body)[name] = value


# --- messages ---------------------------------------------------------------------------------


def _encode_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    # tool_call_id → function name, for results that do not repeat the name.
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = message.role
        texts = system_texts(message, i, "Gemini", "system instructions")
        if texts is not None:
            system.extend({"text": text} for text in texts)
            continue
        if role == _R.ROLE_ASSISTANT:
            wire_role = "model"
            parts = _model_parts(message, i, names)
        elif role in (_R.ROLE_USER, _R.ROLE_TOOL):
            wire_role = "user"
            parts = _user_parts(message, i, names)
        else:
            raise InvalidRequestError("message role is required", param=f"messages[{i}].role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == wire_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": wire_role, "parts": parts})
    return system, contents


def _user_parts(message: types_pb2.Message, i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.content):
        kind = part.WhichOneof("part")
        if kind == "text":
            parts.append({"text": part.text})
        elif kind == "image":
            parts.append(_image_part(part.image, f"messages[{i}].content[{j}].image"))
        elif kind == "tool_result":
            result = part.tool_result
            name = result.name or names.get(result.tool_call_id, "")
            if not name:
                raise InvalidRequestError(
                    "Gemini needs the tool's name for a tool result: send the assistant "
                    "message with the matching tool call, or the result's name",
                    param=f"messages[{i}].tool_call_id",
                )
            response = {"error": result.content} if result.is_error else {"output": result.content}
            fr: dict[str, Any] = {"name": name, "response": response}
            if result.tool_call_id:
                fr["id"] = result.tool_call_id
            parts.append({"functionResponse": fr})
        else:
            raise InvalidRequestError(
                f"a {'tool' if message.role == _R.ROLE_TOOL else 'user'} message cannot "
                f"contain a {kind} part",
                param=f"messages[{i}].content[{j}]",
            )
    return parts


def _model_parts(message: types_pb2.Message, i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.content):
        kind = part.WhichOneof("part")
        if kind == "text":
            parts.append({"text": part.text})
        elif kind == "tool_call":
            call = part.tool_call
            fc: dict[str, Any] = {
                "name": call.name,
                "args": tool_arguments(
                    call.arguments, f"messages[{i}].content[{j}].tool_call.arguments", "Gemini"
                ),
            }
            if call.id:
                fc["id"] = call.id
                names[call.id] = call.name
            entry: dict[str, Any] = {"functionCall": fc}
            if call.signature:
                entry["thoughtSignature"] = call.signature
            parts.append(entry)
        elif kind == "reasoning":
            r = part.reasoning
            if r.text:
                thought: dict[str, Any] = {"text": r.text, "thought": True}
                if r.signature:
                    thought["thoughtSignature"] = r.signature
                parts.append(thought)
            elif r.signature:
                if parts and "thoughtSignature" not in parts[-1]:
                    parts[-1]["thoughtSignature"] = r.signature
                else:
                    parts.append({"text": "", "thoughtSignature": r.signature})
            # Redacted reasoning is Anthropic's; Gemini has nothing to take it back as.
        else:
            raise InvalidRequestError(
                f"an assistant message cannot contain a {kind} part",
                param=f"messages[{i}].content[{j}]",
            )
    if message.refusal and not parts:
        parts.append({"text": message.refusal})
    return parts


def _image_part(image: types_pb2.ImagePart, param: str) -> dict[str, Any]:
    source = image_source(image, param)
    if not source.url:
        return {"inlineData": {"mimeType": source.media_type, "data": source.data}}
    url = source.url
    media_type = source.media_type or mimetypes.guess_type(url.split("?", 1)[0])[0] or ""
    if not media_type.startswith("image/"):
        raise UnsupportedFeatureError(
            "Gemini needs the MIME type of an image URL: set media_type", param=param
        )
    return {"fileData": {"mimeType": media_type, "fileUri": url}}


# --- tools ------------------------------------------------------------------------------------


def _declarations(request: chat_pb2.ChatRequest) -> list[dict[str, Any]]:
    declarations = []
    for i, tool in enumerate(request.tools):
        if tool.HasField("strict") and tool.strict:
            raise UnsupportedFeatureError(
                "Gemini does not support strict tool schemas.", param=f"tools[{i}].function.strict"
            )
        decl: dict[str, Any] = {"name": tool.name}
        if tool.description:
            decl["description"] = tool.description
        if tool.HasField("parameters"):
            decl["parametersJsonSchema"] = struct_to_dict(tool.parameters)
        declarations.append(decl)
    return declarations


def _tool_config(request: chat_pb2.ChatRequest) -> dict[str, Any] | None:
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        raise UnsupportedFeatureError(
            "Gemini cannot be told to avoid parallel tool calls.", param="parallel_tool_calls"
        )
    choice = request.tool_choice
    kind = choice.WhichOneof("choice")
    if kind is None:
        return None
    if kind == "function_name":
        if not request.tools:
            raise InvalidRequestError("tool_choice needs tools", param="tool_choice")
        return {
            "functionCallingConfig": {
                "mode": "ANY",
                "allowedFunctionNames": [choice.function_name],
            }
        }
    mode = {
        _R.TOOL_CHOICE_MODE_AUTO: "AUTO",
        _R.TOOL_CHOICE_MODE_NONE: "NONE",
        _R.TOOL_CHOICE_MODE_REQUIRED: "ANY",
    }.get(choice.mode)
    if mode is None:
        return None
    if not request.tools:
        if mode == "ANY":
            raise InvalidRequestError("tool_choice needs tools", param="tool_choice")
        return None
    return {"functionCallingConfig": {"mode": mode}}
