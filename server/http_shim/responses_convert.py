"""OpenAI Responses API JSON ↔ ``switchboard.v1``, at the shim's edge.

Request side (``to_chat_request``): the validated ``CreateResponse`` (``responses_schema``) as a
``ChatRequest``. Items become messages in order: a ``message`` item a message of its role;
``reasoning``, assistant ``message`` and ``function_call`` items that follow one another become
one assistant message (reasoning, text and tool-call parts in order, as chat APIs want a turn);
each ``function_call_output`` a ``ROLE_TOOL`` message whose result carries the call's name.
``instructions``, ``store`` (default true, as OpenAI), ``previous_response_id`` and
``metadata`` go to the contract's conversation fields (``server.core.conversation``);
``max_output_tokens`` → ``max_tokens``; ``text.format`` → ``response_format``;
``reasoning.effort`` → ``reasoning_effort``. Built-in tools, unknown item and part types, file
inputs, ``background``, ``truncation: auto`` and ``include`` values other than
``reasoning.encrypted_content`` are refused with ``UNSUPPORTED_FEATURE``, never dropped.

Response side (``response_json``): a ``response`` object from the request it answers and its
output items; ``output_items`` turns an assistant message into ``reasoning`` (summary text, and
any signature or redacted block as ``encrypted_content``), ``message`` (``output_text`` /
``refusal``) and ``function_call`` items, in the order produced. Item ids derive from the
response id, so a stored response reads back with the same ids. ``input_items_json`` lists a
stored conversation as items again (``GET /v1/responses/{id}/input_items``).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UnsupportedFeatureError
from server.http_shim import responses_schema as wire
from server.http_shim.schema import field_error, fill_passthrough, schema_struct
from server.providers.codec import struct_to_dict
from server.providers.openai_compat.codec import (
    IMAGE_DETAILS,
    REASONING_EFFORTS,
    TOOL_CHOICE_MODES,
    WIRE_REASONING_EFFORTS,
)

Json = dict[str, Any]
_R = types_pb2

_ROLES = {
    "user": _R.ROLE_USER,
    "assistant": _R.ROLE_ASSISTANT,
    "system": _R.ROLE_SYSTEM,
    "developer": _R.ROLE_DEVELOPER,
}
_WIRE_ROLES = {v: k for k, v in _ROLES.items()}
# `include` values the gateway honours (encrypted reasoning is always included when present).
INCLUDABLE = frozenset({"reasoning.encrypted_content"})
# Opaque reasoning state (signature, redacted block) rides in encrypted_content under this tag.
_ENCRYPTED = "sbr1."


def _unsupported(param: str, what: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(f"{what} is not supported by this gateway", param=param)


# --- request: CreateResponse → ChatRequest ---------------------------------------------------


def to_chat_request(body: wire.CreateResponse) -> chat_pb2.ChatRequest:
    """The contract request for a validated body; unknown fields → ``passthrough``."""
    request = chat_pb2.ChatRequest(model=body.model, user=body.user or "")
    request.store = True if body.store is None else body.store
    if body.instructions:
        request.instructions = body.instructions
    if body.previous_response_id:
        request.previous_response_id = body.previous_response_id
    if body.metadata:
        request.metadata.update(body.metadata)
    if body.background:
        raise _unsupported("background", "background mode")
    if body.truncation == "auto":
        raise _unsupported("truncation", "truncation 'auto'")
    for index, value in enumerate(body.include or ()):
        if value not in INCLUDABLE:
            raise _unsupported(f"include[{index}]", f"include '{value}'")
    items = body.input
    if isinstance(items, str):
        request.messages.add(role=_R.ROLE_USER).content.add(text=items)
    elif items:
        _items(request, items)
    if body.tools:
        for index, tool in enumerate(body.tools):
            if not isinstance(tool, wire.FunctionTool):
                raise _unsupported(f"tools[{index}].type", f"the built-in tool '{tool.type}'")
            _tool(request.tools.add(), tool, index)
    choice = body.tool_choice
    if isinstance(choice, str):
        request.tool_choice.mode = TOOL_CHOICE_MODES[choice]
    elif isinstance(choice, wire.NamedFunction):
        request.tool_choice.function_name = choice.name
    elif choice is not None:
        raise _unsupported("tool_choice.type", f"tool_choice '{choice.type}'")
    if body.parallel_tool_calls is not None:
        request.parallel_tool_calls = body.parallel_tool_calls
    for name in ("temperature", "top_p"):
        value = getattr(body, name)
        if value is not None:
            setattr(request, name, value)
    if body.max_output_tokens is not None:
        request.max_tokens = body.max_output_tokens
    text = body.text
    if text is not None and text.format is not None:
        _text_format(request.response_format, text.format)
    if body.reasoning is not None and body.reasoning.effort is not None:
        request.reasoning_effort = REASONING_EFFORTS[body.reasoning.effort]
    extra = dict(body.model_extra or {})
    if text is not None and text.verbosity is not None:
        # OpenAI upstreams take it as Chat Completions' `verbosity`; others refuse it.
        extra["verbosity"] = text.verbosity
    if extra:
        fill_passthrough(request.passthrough, extra)
    return request


def _items(request: chat_pb2.ChatRequest, items: list[Any]) -> None:
    names: dict[str, str] = {}
    turn: types_pb2.Message | None = None
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if isinstance(item, wire.MessageItem):
            if item.role == "assistant":
                turn = turn or request.messages.add(role=_R.ROLE_ASSISTANT)
                _assistant_content(turn, item.content, where)
                continue
            turn = None
            message = request.messages.add(role=_ROLES[item.role])
            _user_content(message, item.content, where)
        elif isinstance(item, wire.FunctionCallItem):
            turn = turn or request.messages.add(role=_R.ROLE_ASSISTANT)
            names[item.call_id] = item.name
            call = turn.content.add().tool_call
            call.id, call.name, call.arguments = item.call_id, item.name, item.arguments
        elif isinstance(item, wire.ReasoningItem):
            turn = turn or request.messages.add(role=_R.ROLE_ASSISTANT)
            _reasoning(turn.content.add().reasoning, item, where)
        elif isinstance(item, wire.FunctionCallOutputItem):
            turn = None
            result = request.messages.add(role=_R.ROLE_TOOL).content.add().tool_result
            result.tool_call_id = item.call_id
            result.name = names.get(item.call_id, "")
            result.content = _output_text(item.output, f"{where}.output")
        else:
            raise _unsupported(f"{where}.type", f"the input item type '{item.type}'")


def _user_content(message: types_pb2.Message, content: str | list[Any], where: str) -> None:
    if isinstance(content, str):
        message.content.add(text=content)
        return
    for number, part in enumerate(content):
        param = f"{where}.content[{number}]"
        if isinstance(part, wire.InputText | wire.OutputText):
            message.content.add(text=part.text)
        elif isinstance(part, wire.InputImage) and message.role == _R.ROLE_USER:
            if not part.image_url:
                raise _unsupported(f"{param}.file_id", "an image given by file_id")
            image = message.content.add().image
            image.url = part.image_url
            if part.detail is not None:
                image.detail = IMAGE_DETAILS[part.detail]
        else:
            kind = getattr(part, "type", None)
            raise _unsupported(f"{param}.type", f"a '{kind}' part in a {_role(message)} message")


def _assistant_content(turn: types_pb2.Message, content: str | list[Any], where: str) -> None:
    if isinstance(content, str):
        turn.content.add(text=content)
        return
    for number, part in enumerate(content):
        if isinstance(part, wire.OutputText | wire.InputText):
            turn.content.add(text=part.text)
        elif isinstance(part, wire.Refusal):
            turn.refusal += part.refusal
        else:
            kind = getattr(part, "type", None)
            raise _unsupported(
                f"{where}.content[{number}].type", f"a '{kind}' part in an assistant message"
            )


def _output_text(output: str | list[Any], param: str) -> str:
    if isinstance(output, str):
        return output
    texts = []
    for number, part in enumerate(output):
        if not isinstance(part, wire.InputText | wire.OutputText):
            kind = getattr(part, "type", None)
            raise _unsupported(f"{param}[{number}].type", f"a '{kind}' part in a tool output")
        texts.append(part.text)
    return "".join(texts)


def _reasoning(out: types_pb2.ReasoningPart, item: wire.ReasoningItem, where: str) -> None:
    out.text = "".join(s.text for s in item.summary)
    encrypted = item.encrypted_content
    if not encrypted:
        return
    if encrypted.startswith(_ENCRYPTED):
        try:
            state = types_pb2.ReasoningPart.FromString(
                base64.urlsafe_b64decode(encrypted[len(_ENCRYPTED) :])
            )
        except (binascii.Error, ValueError, DecodeError):
            raise field_error(
                f"{where}.encrypted_content", "not encrypted content this gateway produced"
            ) from None
        out.signature = state.signature
        out.redacted_data = state.redacted_data
    else:
        # Another service's opaque state: kept as the signature, for upstreams that know it.
        out.signature = encrypted


def _role(message: types_pb2.Message) -> str:
    return _WIRE_ROLES.get(message.role, "tool")


def _tool(tool: types_pb2.Tool, fn: wire.FunctionTool, index: int) -> None:
    tool.name = fn.name
    if fn.description:
        tool.description = fn.description
    if fn.parameters is not None:
        tool.parameters.CopyFrom(schema_struct(fn.parameters, f"tools[{index}].parameters"))
    if fn.strict is not None:
        tool.strict = fn.strict


def _text_format(out: types_pb2.ResponseFormat, fmt: Any) -> None:
    if isinstance(fmt, wire.TextFormatText):
        out.type = _R.RESPONSE_FORMAT_TYPE_TEXT
    elif isinstance(fmt, wire.TextFormatJsonObject):
        out.type = _R.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    else:
        out.type = _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
        out.json_schema.name = fmt.name
        out.json_schema.description = fmt.description or ""
        out.json_schema.schema.CopyFrom(schema_struct(fmt.schema_, "text.format.schema"))
        if fmt.strict is not None:
            out.json_schema.strict = fmt.strict


# --- response: ChatResponse → response object --------------------------------------------------


def response_id_of(response_id: str, request_id: str) -> str:
    """The stored response's id, else ``resp_<request id>`` for an unstored one."""
    return response_id or f"resp_{request_id}"


def _item_id(prefix: str, response_id: str, index: int) -> str:
    return f"{prefix}_{response_id.removeprefix('resp_')}{index:03d}"


def encrypted_content(part: types_pb2.ReasoningPart) -> str | None:
    """A reasoning part's opaque state (signature, redacted block) for ``encrypted_content``."""
    if not part.signature and not part.redacted_data:
        return None
    state = types_pb2.ReasoningPart(signature=part.signature, redacted_data=part.redacted_data)
    return _ENCRYPTED + base64.urlsafe_b64encode(state.SerializeToString()).decode("ascii")


def reasoning_item(item_id: str, text: str, encrypted: str | None) -> Json:
    """A ``reasoning`` output item."""
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": summary,
        "encrypted_content": encrypted,
        "status": "completed",
    }


def text_part(text: str) -> Json:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[Json], status: str = "completed") -> Json:
    """An assistant ``message`` output item."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(item_id: str, call: types_pb2.ToolCall, status: str = "completed") -> Json:
    """A ``function_call`` output item."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": call.arguments,
        "call_id": call.id,
        "name": call.name,
    }


def output_items(message: types_pb2.Message, response_id: str, status: str) -> list[Json]:
    """The ``output`` of a response: its assistant message as items, in the order produced."""
    items: list[Json] = []
    texts: list[Json] | None = None
    for part in message.content:
        kind = part.WhichOneof("part")
        index = len(items)
        if kind == "text":
            if texts is None:
                texts = []
                items.append(message_item(_item_id("msg", response_id, index), texts, status))
            texts.append(text_part(part.text))
            continue
        texts = None
        if kind == "reasoning":
            r = part.reasoning
            items.append(
                reasoning_item(_item_id("rs", response_id, index), r.text, encrypted_content(r))
            )
        elif kind == "tool_call":
            items.append(function_call_item(_item_id("fc", response_id, index), part.tool_call))
    if message.refusal:
        items.append(
            message_item(
                _item_id("msg", response_id, len(items)),
                [{"type": "refusal", "refusal": message.refusal}],
                status,
            )
        )
    return items


def status_of(finish: int) -> tuple[str, Json | None]:
    """``completed``, or ``incomplete`` with its reason (the length or a content filter)."""
    if finish == _R.FINISH_REASON_LENGTH:
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == _R.FINISH_REASON_CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def usage_json(usage: types_pb2.Usage, cost: types_pb2.Cost | None = None) -> Json:
    """The Responses ``usage`` object (plus Switchboard's ``cost_usd``)."""
    out: Json = {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if cost is not None:
        out["cost_usd"] = cost.total_usd
    return out


def _tools_json(tools: Iterable[types_pb2.Tool]) -> list[Json]:
    out = []
    for tool in tools:
        out.append(
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description or None,
                "parameters": struct_to_dict(tool.parameters)
                if tool.HasField("parameters")
                else None,
                "strict": tool.strict if tool.HasField("strict") else None,
            }
        )
    return out


def _format_json(rf: types_pb2.ResponseFormat) -> Json:
    if rf.type == _R.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return {"type": "json_object"}
    if rf.type == _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        spec = rf.json_schema
        return {
            "type": "json_schema",
            "name": spec.name,
            "description": spec.description or None,
            "schema": struct_to_dict(spec.schema),
            "strict": spec.strict if spec.HasField("strict") else None,
        }
    return {"type": "text"}


def _tool_choice_json(choice: types_pb2.ToolChoice) -> Any:
    if choice.WhichOneof("choice") == "function_name":
        return {"type": "function", "name": choice.function_name}
    if choice.WhichOneof("choice") == "mode":
        return {
            _R.TOOL_CHOICE_MODE_NONE: "none",
            _R.TOOL_CHOICE_MODE_REQUIRED: "required",
        }.get(choice.mode, "auto")
    return "auto"


def response_json(
    request: chat_pb2.ChatRequest,
    *,
    response_id: str,
    created: int,
    status: str,
    output: list[Json],
    usage: Json | None = None,
    incomplete: Json | None = None,
    error: Json | None = None,
    completed_at: int | None = None,
) -> Json:
    """A ``response`` object answering ``request`` (the caller's own fields are echoed);
    ``completed_at`` defaults to now for a finished one."""
    done = status in ("completed", "incomplete", "failed")
    if done and completed_at is None:
        completed_at = int(time.time())
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": completed_at if done else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.instructions or None,
        "max_output_tokens": request.max_tokens if request.HasField("max_tokens") else None,
        "max_tool_calls": None,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": (
            request.parallel_tool_calls if request.HasField("parallel_tool_calls") else True
        ),
        "previous_response_id": request.previous_response_id or None,
        "prompt_cache_key": None,
        "reasoning": {
            "effort": WIRE_REASONING_EFFORTS.get(request.reasoning_effort),
            "summary": None,
        },
        "safety_identifier": None,
        "service_tier": "default",
        "store": bool(request.store),
        "temperature": request.temperature if request.HasField("temperature") else 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "text": {"format": _format_json(request.response_format), "verbosity": "medium"},
        "tool_choice": _tool_choice_json(request.tool_choice),
        "tools": _tools_json(request.tools),
        "top_logprobs": 0,
        "top_p": request.top_p if request.HasField("top_p") else 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user or None,
        "metadata": dict(request.metadata),
    }


def completed_json(
    request: chat_pb2.ChatRequest,
    response: chat_pb2.ChatResponse,
    response_id: str,
    *,
    completed_at: int | None = None,
) -> Json:
    """The ``response`` object of a finished (or stored) completion."""
    status, incomplete = status_of(response.finish_reason)
    return response_json(
        request,
        response_id=response_id,
        created=response.created,
        status=status,
        output=output_items(response.message, response_id, status),
        usage=usage_json(response.usage, response.cost),
        incomplete=incomplete,
        completed_at=completed_at,
    )


# --- stored conversations as items (input_items) ----------------------------------------------


def input_items_json(stored: chat_pb2.StoredResponse) -> list[Json]:
    """The stored conversation's messages as Responses items, oldest first."""
    items: list[Json] = []
    base = stored.id
    for m_index, message in enumerate(stored.request.messages):
        item_base = f"{base}{m_index:03d}"
        if message.role == _R.ROLE_ASSISTANT:
            for item in output_items(message, item_base, "completed"):
                items.append(item)
            continue
        if message.role == _R.ROLE_TOOL:
            for p_index, part in enumerate(message.content):
                if part.WhichOneof("part") == "tool_result":
                    result = part.tool_result
                    items.append(
                        {
                            "id": _item_id("fco", item_base, p_index),
                            "type": "function_call_output",
                            "status": "completed",
                            "call_id": result.tool_call_id,
                            "output": result.content,
                        }
                    )
            continue
        content: list[Json] = []
        for part in message.content:
            kind = part.WhichOneof("part")
            if kind == "text":
                content.append({"type": "input_text", "text": part.text})
            elif kind == "image":
                content.append(
                    {
                        "type": "input_image",
                        "image_url": part.image.url,
                        "detail": {1: "auto", 2: "low", 3: "high"}.get(part.image.detail, "auto"),
                    }
                )
        items.append(
            {
                "id": _item_id("msg", item_base, 0),
                "type": "message",
                "status": "completed",
                "role": _role(message),
                "content": content,
            }
        )
    return items
