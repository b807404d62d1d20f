"""Anthropic Messages API response → ``switchboard.v1`` messages, usage and finish reasons.

Usage, stop reasons and tool inputs are read with ``codec`` (shared with the ``/v1/messages``
dialect): the contract's ``input_tokens`` counts every prompt token, so it is Anthropic's
``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``; the cache read and
creation are kept apart because cost is computed from each at its own price.
"""

from __future__ import annotations

from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.providers.anthropic.codec import arguments_text, fill_usage, finish_reason

_R = types_pb2


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
            arguments = arguments_text(block.get("input"))
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
