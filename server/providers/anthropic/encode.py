"""``switchboard.v1.ChatRequest`` → Anthropic Messages API request body.

Mapping (anything the API cannot express raises ``UnsupportedFeatureError``):
- system and developer messages, wherever they are, → top-level ``system`` (a string for one
  text, else text blocks); participant ``name``s are refused;
- user/assistant/tool turns → ``messages``; consecutive turns of the same role are merged,
  so the tool results of parallel calls land in one user turn, before any user text;
- tool calls ↔ ``tool_use`` blocks (arguments parsed to ``input``), tool results →
  ``tool_result`` blocks, images → ``image`` blocks with a ``url`` or ``base64`` source,
  reasoning with an Anthropic signature → ``thinking`` / ``redacted_thinking`` blocks;
- ``max_tokens`` is always sent (``models.model_info`` default when unset); temperature (0-1
  here), top_p and stop map directly; seed, penalties and n>1 are refused; ``user`` →
  ``metadata.user_id``; an image's ``detail`` is an OpenAI quality hint with no equivalent and
  is not sent; ``strict`` tools need a model with structured outputs;
- ``response_format``: ``json_schema`` uses native ``output_config.format`` on models that have
  it; JSON mode and schemas on other models use a forced tool whose input is the answer
  (``EncodedRequest.json_tool`` tells the decoder to turn it back into text; tool inputs are
  schema-guided, not constrained decoding, and cannot be combined with caller tools);
- passthrough fields mapped knowingly: ``top_k``, ``thinking``, ``cache_control`` (top-level
  automatic prompt caching) and ``output_config`` (e.g. ``effort``; merged with the structured
  output format), sent unchanged; any other passthrough field is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError
from server.providers.anthropic.codec import image_json, tool_use_json
from server.providers.anthropic.models import model_info
from server.providers.codec import struct_to_dict, system_texts, tool_arguments

# Passthrough keys this adapter sends on knowingly (the API's own names and shapes).
PASSTHROUGH_FIELDS = frozenset({"top_k", "thinking", "cache_control", "output_config"})
# Name of the forced tool used for JSON mode when native structured output is unavailable.
JSON_TOOL_NAME = "json_response"

_R = types_pb2


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """The request body plus what decoding the answer needs to know."""

    body: dict[str, Any]
    # Set when JSON output goes through a forced tool: its input is the message text.
    json_tool: str | None = None


def encode_request(
    request: chat_pb2.ChatRequest, model: str, *, stream: bool = False
) -> EncodedRequest:
    """The Messages API body for ``request`` sent to ``model``."""
    info = model_info(model)
    body: dict[str, Any] = {"model": model}
    system, messages = _encode_messages(request.messages)
    body["max_tokens"] = (
        request.max_tokens if request.HasField("max_tokens") else info.max_output_tokens
    )
    body["messages"] = messages
    if system:
        body["system"] = system[0]["text"] if len(system) == 1 else system
    _sampling(request, body, info.rejects_sampling)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    json_tool = _response_format(request, body, info.structured_output)
    if json_tool is None:
        _tools(request, body, info.structured_output)
    _thinking(request, body)
    _passthrough(request, body)
    if stream:
        body["stream"] = True
    return EncodedRequest(body=body, json_tool=json_tool)


def _sampling(request: chat_pb2.ChatRequest, body: dict[str, Any], rejects: bool) -> None:
    for field in ("seed", "presence_penalty", "frequency_penalty"):
        if request.HasField(field):
            raise UnsupportedFeatureError(
                f"Anthropic models do not support `{field}`.", param=field
            )
    if request.HasField("n") and request.n != 1:
        raise UnsupportedFeatureError("Anthropic models return one choice (n=1).", param="n")
    for field in ("temperature", "top_p"):
        if not request.HasField(field):
            continue
        if rejects:
            raise UnsupportedFeatureError(
                f"This Anthropic model does not accept `{field}`.", param=field
            )
        value = getattr(request, field)
        if field == "temperature" and value > 1.0:
            raise UnsupportedFeatureError(
                "Anthropic models accept a temperature between 0 and 1.", param="temperature"
            )
        body[field] = value
    if request.stop:
        body["stop_sequences"] = list(request.stop)


# Reasoning effort → extended thinking budget (tokens); `none` sends no thinking.
THINKING_BUDGETS = {
    _R.REASONING_EFFORT_MINIMAL: 1024,
    _R.REASONING_EFFORT_LOW: 2048,
    _R.REASONING_EFFORT_MEDIUM: 8192,
    _R.REASONING_EFFORT_HIGH: 24576,
    _R.REASONING_EFFORT_XHIGH: 32000,
}
# Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024


def _thinking(request: chat_pb2.ChatRequest, body: dict[str, Any]) -> None:
    budget = THINKING_BUDGETS.get(request.reasoning_effort)
    if budget is None:
        return
    # The budget must stay below max_tokens (thinking counts against it).
    budget = min(budget, body["max_tokens"] - 1)
    if budget < MIN_THINKING_BUDGET:
        raise UnsupportedFeatureError(
            f"Anthropic thinking needs max_tokens above {MIN_THINKING_BUDGET}.",
            param="reasoning_effort",
        )
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}


def _passthrough(request: chat_pb2.ChatRequest, body: dict[str, Any]) -> None:
    if not request.HasField("passthrough") or not request.passthrough.fields:
        return
    extra = struct_to_dict(request.passthrough)
    unknown = sorted(k for k in extra if k not in PASSTHROUGH_FIELDS)
    if unknown:
        raise UnsupportedFeatureError(
            "Anthropic does not support these request fields: " + ", ".join(unknown),
            param=unknown[0],
        )
    if "top_k" in extra and model_info(body["model"]).rejects_sampling:
        raise UnsupportedFeatureError(
            "This Anthropic model does not accept `top_k`.", param="top_k"
        )
    config = extra.pop("output_config", None)
    if config is not None:
        if not isinstance(config, dict):
            raise InvalidRequestError("output_config must be an object", param="output_config")
        merged = dict(body.get("output_config") or {})
        if "format" in merged and "format" in config:
            raise InvalidRequestError(
                "output_config.format conflicts with response_format", param="output_config"
            )
        merged.update(config)
        body["output_config"] = merged
    body.update(extra)


# --- messages ---------------------------------------------------------------------------------


def _encode_messages(
    messages: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        texts = system_texts(message, i, "Anthropic", "system prompts")
        if texts is not None:
            system.extend({"type": "text", "text": text} for text in texts)
            continue
        if role == _R.ROLE_ASSISTANT:
            wire_role = "assistant"
            blocks = _blocks(message, i, assistant=True)
        elif role in (_R.ROLE_USER, _R.ROLE_TOOL):
            wire_role = "user"
            blocks = _blocks(message, i, assistant=False)
        else:
            raise InvalidRequestError("message role is required", param=f"messages[{i}].role")
        if not blocks:
            # The API rejects empty turns (e.g. one that held only unreplayable reasoning).
            continue
        if out and out[-1]["role"] == wire_role:
            # The API wants alternating turns; parallel tool results become one user turn.
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": wire_role, "content": blocks})
    return system, out


def _blocks(message: types_pb2.Message, i: int, *, assistant: bool) -> list[dict[str, Any]]:
    """The content blocks of one turn: text and images or tool results for a user (or tool)
    turn; text, tool calls and signed reasoning for an assistant turn."""
    allowed = _ASSISTANT_PARTS if assistant else _USER_PARTS
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(message.content):
        kind = part.WhichOneof("part")
        param = f"messages[{i}].content[{j}]"
        if kind not in allowed:
            who = (
                "an assistant"
                if assistant
                else "a tool"
                if message.role == _R.ROLE_TOOL
                else "a user"
            )
            raise InvalidRequestError(f"{who} message cannot contain a {kind} part", param=param)
        block = _block(part, kind, param)
        if block is not None:
            blocks.append(block)
    if assistant and message.refusal and not blocks:
        blocks.append({"type": "text", "text": message.refusal})
    return blocks


_USER_PARTS = frozenset({"text", "image", "tool_result"})
_ASSISTANT_PARTS = frozenset({"text", "tool_call", "reasoning"})


def _block(part: types_pb2.ContentPart, kind: str | None, param: str) -> dict[str, Any] | None:
    """One part as an Anthropic block; None for what the API has no block for (empty text,
    reasoning without an Anthropic signature: the API rejects unsigned thinking)."""
    if kind == "text":
        return {"type": "text", "text": part.text} if part.text else None
    if kind == "image":
        return image_json(part.image, f"{param}.image")
    if kind == "tool_result":
        result = part.tool_result
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": result.tool_call_id,
            "content": result.content,
        }
        if result.is_error:
            block["is_error"] = True
        return block
    if kind == "tool_call":
        call = part.tool_call
        arguments = tool_arguments(call.arguments, f"{param}.tool_call.arguments", "Anthropic")
        return tool_use_json(call.id, call.name, arguments)
    r = part.reasoning
    if r.redacted_data:
        return {"type": "redacted_thinking", "data": r.redacted_data}
    if r.signature and r.text:
        return {"type": "thinking", "thinking": r.text, "signature": r.signature}
    return None


# --- tools and output format ------------------------------------------------------------------


def _tools(request: chat_pb2.ChatRequest, body: dict[str, Any], strict_ok: bool) -> None:
    choice_kind = request.tool_choice.WhichOneof("choice")
    mode = request.tool_choice.mode if choice_kind == "mode" else None
    if not request.tools:
        if choice_kind == "function_name" or mode == _R.TOOL_CHOICE_MODE_REQUIRED:
            raise InvalidRequestError("tool_choice needs tools", param="tool_choice")
        return
    tools = []
    for i, tool in enumerate(request.tools):
        entry: dict[str, Any] = {"name": tool.name}
        if tool.description:
            entry["description"] = tool.description
        entry["input_schema"] = (
            struct_to_dict(tool.parameters)
            if tool.HasField("parameters")
            else {"type": "object", "properties": {}}
        )
        if tool.HasField("strict") and tool.strict:
            if not strict_ok:
                raise UnsupportedFeatureError(
                    "This Anthropic model does not support strict tool schemas.",
                    param=f"tools[{i}].function.strict",
                )
            entry["strict"] = True
        tools.append(entry)
    body["tools"] = tools
    choice: dict[str, Any]
    if choice_kind == "function_name":
        choice = {"type": "tool", "name": request.tool_choice.function_name}
    elif mode == _R.TOOL_CHOICE_MODE_REQUIRED:
        choice = {"type": "any"}
    elif mode == _R.TOOL_CHOICE_MODE_NONE:
        body["tool_choice"] = {"type": "none"}
        return
    else:
        choice = {"type": "auto"}
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        choice["disable_parallel_tool_use"] = True
    body["tool_choice"] = choice


def _response_format(
    request: chat_pb2.ChatRequest, body: dict[str, Any], native: bool
) -> str | None:
    rf = request.response_format
    if rf.type == _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        schema = (
            struct_to_dict(rf.json_schema.schema)
            if rf.json_schema.HasField("schema")
            else {"type": "object"}
        )
        if native:
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
            return None
        return _json_tool(request, body, schema, rf.json_schema.description)
    if rf.type == _R.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        # Native structured output needs a closed schema, so free-form JSON uses the tool.
        return _json_tool(request, body, {"type": "object"}, "")
    return None


def _json_tool(
    request: chat_pb2.ChatRequest, body: dict[str, Any], schema: dict[str, Any], description: str
) -> str:
    if request.tools:
        raise UnsupportedFeatureError(
            "On this Anthropic model JSON output uses a forced tool, so it cannot be combined "
            "with tools.",
            param="response_format",
        )
    if schema.get("type") != "object":
        raise UnsupportedFeatureError(
            "On this Anthropic model a JSON schema must describe an object.",
            param="response_format.json_schema.schema",
        )
    body["tools"] = [
        {
            "name": JSON_TOOL_NAME,
            "description": description or "Respond with a JSON object.",
            "input_schema": schema,
        }
    ]
    body["tool_choice"] = {"type": "tool", "name": JSON_TOOL_NAME}
    return JSON_TOOL_NAME
