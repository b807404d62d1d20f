"""OpenAI Chat Completions wire ⇄ ``switchboard.v1``: the helpers the openai_compat adapter and
the ``/v1/chat/completions`` dialect (``server/http_shim/openai_*``) both use.

- Enumerations: roles, image ``detail``, ``tool_choice`` modes and ``response_format`` types,
  wire → contract; the ``WIRE_*`` tables are their inverses.
- Finish reasons: ``finish_reason`` reads (with the spellings OpenAI-compatible servers pass
  through from their native APIs), ``finish_reason_json`` writes.
- Usage: ``decode_usage`` reads, ``usage_json`` writes; both keep the contract's convention,
  which is OpenAI's (``prompt_tokens`` includes the cached tokens).
- Tool calls: ``tool_call_json`` writes an assistant ``tool_calls[i]``; ``arguments_text``
  reads arguments (a few servers send an object instead of a string).
- Images: ``image_url_json`` writes an ``image_url`` part (bytes become a ``data:`` URL).
- Ids: ``chatcmpl-<request id>`` for a completion; a tool call an upstream sent without an id
  gets ``call_<hex>`` (``providers.codec.new_call_id``, shared with Gemini).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from switchboard.v1 import types_pb2

from server.core.errors import InvalidRequestError

_R = types_pb2
Json = dict[str, Any]

ROLES = {
    "system": _R.ROLE_SYSTEM,
    "developer": _R.ROLE_DEVELOPER,
    "user": _R.ROLE_USER,
    "assistant": _R.ROLE_ASSISTANT,
    "tool": _R.ROLE_TOOL,
}
WIRE_ROLES = {role: name for name, role in ROLES.items()}

IMAGE_DETAILS = {
    "auto": _R.IMAGE_DETAIL_AUTO,
    "low": _R.IMAGE_DETAIL_LOW,
    "high": _R.IMAGE_DETAIL_HIGH,
}
WIRE_IMAGE_DETAILS = {detail: name for name, detail in IMAGE_DETAILS.items()}

TOOL_CHOICE_MODES = {
    "auto": _R.TOOL_CHOICE_MODE_AUTO,
    "none": _R.TOOL_CHOICE_MODE_NONE,
    "required": _R.TOOL_CHOICE_MODE_REQUIRED,
}
WIRE_TOOL_CHOICE_MODES = {mode: name for name, mode in TOOL_CHOICE_MODES.items()}

RESPONSE_FORMAT_TYPES = {
    "text": _R.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": _R.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    "json_schema": _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}

REASONING_EFFORTS = {
    "none": _R.REASONING_EFFORT_NONE,
    "minimal": _R.REASONING_EFFORT_MINIMAL,
    "low": _R.REASONING_EFFORT_LOW,
    "medium": _R.REASONING_EFFORT_MEDIUM,
    "high": _R.REASONING_EFFORT_HIGH,
    "xhigh": _R.REASONING_EFFORT_XHIGH,
}
WIRE_REASONING_EFFORTS = {effort: name for name, effort in REASONING_EFFORTS.items()}

FINISH_REASONS = {
    "stop": _R.FINISH_REASON_STOP,
    "length": _R.FINISH_REASON_LENGTH,
    "tool_calls": _R.FINISH_REASON_TOOL_CALLS,
    # The deprecated functions API names the same thing function_call.
    "function_call": _R.FINISH_REASON_TOOL_CALLS,
    "content_filter": _R.FINISH_REASON_CONTENT_FILTER,
    # Spellings some OpenAI-compatible servers pass through from their native APIs.
    "end_turn": _R.FINISH_REASON_STOP,
    "stop_sequence": _R.FINISH_REASON_STOP,
    "eos": _R.FINISH_REASON_STOP,
    "max_tokens": _R.FINISH_REASON_LENGTH,
    "model_length": _R.FINISH_REASON_LENGTH,
    "tool_use": _R.FINISH_REASON_TOOL_CALLS,
}
WIRE_FINISH_REASONS: dict[int, str] = {
    _R.FINISH_REASON_UNSPECIFIED: "stop",
    _R.FINISH_REASON_STOP: "stop",
    _R.FINISH_REASON_LENGTH: "length",
    _R.FINISH_REASON_TOOL_CALLS: "tool_calls",
    _R.FINISH_REASON_CONTENT_FILTER: "content_filter",
}

# Image magic numbers, for raw bytes that arrive without a media type.
_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)


# --- finish reasons ---------------------------------------------------------------------------


def finish_reason(raw: object, has_tool_calls: bool) -> types_pb2.FinishReason:
    """The contract finish reason for an upstream one.

    A reply that carries tool calls is reported as TOOL_CALLS even when the upstream said
    ``stop`` (Gemini's and some vLLM OpenAI-compatible endpoints do): clients drive their tool
    loop from this value.
    """
    mapped = (
        FINISH_REASONS.get(raw, _R.FINISH_REASON_STOP)
        if isinstance(raw, str)
        else _R.FINISH_REASON_STOP
    )
    if has_tool_calls and mapped == _R.FINISH_REASON_STOP:
        return _R.FINISH_REASON_TOOL_CALLS
    return mapped


def finish_reason_json(reason: int) -> str:
    """OpenAI's ``finish_reason`` for a contract one."""
    return WIRE_FINISH_REASONS.get(reason, "stop")


# --- usage ------------------------------------------------------------------------------------


def decode_usage(usage: object) -> types_pb2.Usage:
    """OpenAI ``CompletionUsage`` → contract Usage (input includes the cached tokens)."""
    if not isinstance(usage, dict):
        return types_pb2.Usage()
    prompt_details = usage.get("prompt_tokens_details")
    if not isinstance(prompt_details, dict):
        prompt_details = {}
    completion_details = usage.get("completion_tokens_details")
    if not isinstance(completion_details, dict):
        completion_details = {}
    cached = _int(prompt_details.get("cached_tokens")) or _int(usage.get("prompt_cache_hit_tokens"))
    return types_pb2.Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        cached_input_tokens=cached,
        cache_write_input_tokens=_int(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
    )


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def usage_json(usage: types_pb2.Usage, cost: types_pb2.Cost | None = None) -> Json:
    """OpenAI ``usage`` (``CompletionUsage``), plus Switchboard's ``cost_usd`` when known."""
    out: Json = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    if cost is not None:
        out["cost_usd"] = cost.total_usd
    return out


# --- tool calls -------------------------------------------------------------------------------


def tool_call_json(call_id: str, name: str, arguments: str) -> Json:
    """An assistant message's ``tool_calls[i]`` (also the first streamed delta of a call)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def arguments_text(arguments: object) -> str:
    """Tool-call arguments as JSON text; a few servers send an object instead of a string."""
    if isinstance(arguments, str):
        return arguments
    if arguments is None:
        return ""
    return orjson.dumps(arguments).decode()


# --- images -----------------------------------------------------------------------------------


def image_url_json(image: types_pb2.ImagePart, param: str) -> Json:
    """An ``image_url`` content part: the URL as given, or bytes as a ``data:`` URL."""
    source = image.WhichOneof("source")
    if source == "url":
        url = image.url
    elif source == "data":
        media_type = image.media_type or _sniff(image.data)
        if not media_type:
            raise InvalidRequestError("image bytes need a media_type", param=f"{param}.media_type")
        url = f"data:{media_type};base64,{base64.b64encode(image.data).decode('ascii')}"
    else:
        raise InvalidRequestError("image needs a url or data", param=param)
    image_url: Json = {"url": url}
    if image.detail in WIRE_IMAGE_DETAILS:
        image_url["detail"] = WIRE_IMAGE_DETAILS[image.detail]
    return {"type": "image_url", "image_url": image_url}


def _sniff(data: bytes) -> str:
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    return ""


# --- ids --------------------------------------------------------------------------------------


def completion_id(request_id: str) -> str:
    """OpenAI-style completion id (``chatcmpl-…``) for a gateway request id."""
    return f"chatcmpl-{request_id}"
