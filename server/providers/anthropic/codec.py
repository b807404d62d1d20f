"""Anthropic Messages wire ⇄ ``switchboard.v1``: the helpers the adapter and the ``/v1/messages``
dialect (``server/http_shim/anthropic_*``) both use, each direction next to the other.

- Usage: the contract counts every prompt token in ``input_tokens`` (OpenAI's convention), with
  ``cached_input_tokens`` the cache read and ``cache_write_input_tokens`` the cache creation;
  Anthropic's ``input_tokens`` EXCLUDES both, which it lists as ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``. ``fill_usage`` reads the wire, ``usage_json`` writes it.
- Stop reasons: ``finish_reason`` reads, ``stop_reason`` writes. The contract does not say which
  stop sequence matched, so a stop is always written as ``end_turn``.
- Tool calls: a ``tool_use`` block's ``input`` is an object, contract arguments are JSON text.
  ``arguments_text`` reads; ``tool_input`` writes for clients, where arguments that are not a
  JSON object (models emit invalid JSON) become ``{"_raw_arguments": "<text as produced>"}`` so
  nothing is lost (sent back in a later turn, that object is what an upstream sees: valid JSON
  every upstream accepts). Towards Anthropic such text is refused (``codec.tool_arguments``).
- Images: ``image_json`` writes an ``image`` block (base64 or url source), ``fill_image`` reads.
- Ids: ``msg_<request id>`` for a message, ``toolu_<hex>`` for a tool call that came without one.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from switchboard.v1 import types_pb2

from server.providers.codec import arguments_object, image_source

_R = types_pb2
Json = dict[str, Any]

# Wrapper key for tool-call arguments that are not a JSON object (see the module docstring).
RAW_ARGUMENTS_KEY = "_raw_arguments"

# Anthropic stop_reason → contract finish reason.
FINISH_REASONS: dict[str, int] = {
    "end_turn": _R.FINISH_REASON_STOP,
    "stop_sequence": _R.FINISH_REASON_STOP,
    # Server tools paused a long turn; for the caller the turn is over.
    "pause_turn": _R.FINISH_REASON_STOP,
    "max_tokens": _R.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": _R.FINISH_REASON_LENGTH,
    "tool_use": _R.FINISH_REASON_TOOL_CALLS,
    "refusal": _R.FINISH_REASON_CONTENT_FILTER,
}

# Contract finish reason → Anthropic stop_reason.
STOP_REASONS: dict[int, str] = {
    _R.FINISH_REASON_UNSPECIFIED: "end_turn",
    _R.FINISH_REASON_STOP: "end_turn",
    _R.FINISH_REASON_LENGTH: "max_tokens",
    _R.FINISH_REASON_TOOL_CALLS: "tool_use",
    _R.FINISH_REASON_CONTENT_FILTER: "refusal",
}


# --- stop reasons -----------------------------------------------------------------------------


def finish_reason(stop_reason: str | None, *, json_tool: bool = False) -> int:
    """The contract finish reason for an Anthropic ``stop_reason``."""
    if not stop_reason:
        return _R.FINISH_REASON_UNSPECIFIED
    reason = FINISH_REASONS.get(stop_reason, _R.FINISH_REASON_STOP)
    if json_tool and reason == _R.FINISH_REASON_TOOL_CALLS:
        # The forced JSON tool is the answer itself, not a call for the client to run.
        return _R.FINISH_REASON_STOP
    return reason


def stop_reason(finish_reason: int, has_tool_calls: bool) -> str:
    """The Anthropic ``stop_reason`` for a contract finish reason."""
    reason = STOP_REASONS.get(finish_reason, "end_turn")
    if reason == "end_turn" and has_tool_calls:
        # Clients drive their tool loop from stop_reason == "tool_use".
        return "tool_use"
    return reason


# --- usage ------------------------------------------------------------------------------------


def fill_usage(usage: types_pb2.Usage, raw: dict[str, Any]) -> None:
    """Sets ``usage`` from an Anthropic ``usage`` object (fields absent in ``raw`` stay)."""
    if not raw:
        return
    read = raw.get("cache_read_input_tokens")
    write = raw.get("cache_creation_input_tokens")
    if read is not None:
        usage.cached_input_tokens = int(read)
    if write is not None:
        usage.cache_write_input_tokens = int(write)
    base = raw.get("input_tokens")
    if base is not None:
        usage.input_tokens = int(base) + usage.cached_input_tokens + usage.cache_write_input_tokens
    out = raw.get("output_tokens")
    if out is not None:
        usage.output_tokens = int(out)
    details = raw.get("output_tokens_details")
    if isinstance(details, dict) and details.get("thinking_tokens") is not None:
        usage.reasoning_tokens = int(details["thinking_tokens"])


def usage_json(usage: types_pb2.Usage) -> Json:
    """Anthropic ``usage``: input EXCLUDES the cache reads and writes it lists separately."""
    cached = usage.cached_input_tokens
    written = usage.cache_write_input_tokens
    return {
        "input_tokens": max(usage.input_tokens - cached - written, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


# --- tool calls -------------------------------------------------------------------------------


def arguments_text(tool_input: object) -> str:
    """Contract tool-call arguments (JSON text) for a ``tool_use`` block's ``input``."""
    return orjson.dumps(tool_input or {}).decode()


def tool_input(arguments: str) -> Json:
    """A ``tool_use`` ``input`` for contract arguments, for a client (see the module docstring)."""
    value = arguments_object(arguments)
    return {RAW_ARGUMENTS_KEY: arguments} if value is None else value


def tool_use_json(call_id: str, name: str, tool_input: Json) -> Json:
    """A ``tool_use`` content block."""
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


# --- images -----------------------------------------------------------------------------------


def image_json(image: types_pb2.ImagePart, param: str) -> Json:
    """An ``image`` content block: a ``url`` source for http(s) URLs, else ``base64``."""
    source = image_source(image, param)
    if source.url:
        return {"type": "image", "source": {"type": "url", "url": source.url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": source.media_type, "data": source.data},
    }


def fill_image(
    image: types_pb2.ImagePart, *, url: str = "", media_type: str = "", data: bytes = b""
) -> None:
    """Sets a contract image from an ``image`` block's source: a ``url`` one, or a ``base64``
    one as its media type and decoded bytes."""
    if url:
        image.url = url
    else:
        image.data = data
        image.media_type = media_type


# --- ids --------------------------------------------------------------------------------------


def message_id(request_id: str) -> str:
    """Anthropic-style message id for a gateway request id."""
    return f"msg_{request_id}"


def tool_use_id(call_id: str) -> str:
    """The call's own id, or a new Anthropic-style one (clients need one to answer the call)."""
    return call_id or f"toolu_{os.urandom(12).hex()}"
