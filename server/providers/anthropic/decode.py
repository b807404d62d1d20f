"""Anthropic Messages API response → ``switchboard.v1`` messages, usage and finish reasons.

Usage follows the contract's OpenAI convention: ``input_tokens`` counts every prompt token, so
it is Anthropic's ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``;
``cached_input_tokens`` is the cache read and ``cache_write_input_tokens`` the cache creation,
which cost is computed from at its own price.
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

_R = types_pb2

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


def finish_reason(stop_reason: str | None, *, json_tool: bool = False) -> int:
    """The contract finish reason for an Anthropic ``stop_reason``."""
    if not stop_reason:
        return _R.FINISH_REASON_UNSPECIFIED
    reason = FINISH_REASONS.get(stop_reason, _R.FINISH_REASON_STOP)
    if json_tool and reason == _R.FINISH_REASON_TOOL_CALLS:
        # The forced JSON tool is the answer itself, not a call for the client to run.
        return _R.FINISH_REASON_STOP
    return reason


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


def decode_response(data: dict[str, Any], json_tool: str | None = None) -> chat_pb2.ChatResponse:
    """A ``ChatResponse`` (message, finish_reason, usage) from a Messages API response body."""
    response = chat_pb2.ChatResponse()
    message = response.message
    message.role = _R.ROLE_ASSISTANT
    content = message.content
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text = block.get("text") or ""
            if text:
                content.add().text = text
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if json_tool is not None and block.get("name") == json_tool:
                content.add().text = arguments
            else:
                call = content.add().tool_call
                call.id = block.get("id") or ""
                call.name = block.get("name") or ""
                call.arguments = arguments
        elif kind == "thinking":
            r = content.add().reasoning
            r.text = block.get("thinking") or ""
            r.signature = block.get("signature") or ""
        elif kind == "redacted_thinking":
            content.add().reasoning.redacted_data = block.get("data") or ""
        # Other block types belong to server tools, which this adapter never enables.
    response.finish_reason = finish_reason(  # type: ignore[assignment]
        data.get("stop_reason"), json_tool=json_tool is not None
    )
    fill_usage(response.usage, data.get("usage") or {})
    return response
