"""Gemini ``GenerateContentResponse`` → ``switchboard.v1`` message, usage and finish reason.

- ``functionCall`` parts become tool calls; Gemini rarely gives ids, so missing ones are
  generated (``call_<hex>``); several parts in one candidate are parallel calls. A call's
  ``thoughtSignature`` goes to ``ToolCall.signature``.
- ``thought: true`` parts become reasoning; a ``thoughtSignature`` on a text part becomes a
  signature-only ``ReasoningPart`` right after that text, so it is never shown as text yet can
  be sent back on the next turn.
- Usage: ``input_tokens`` = ``promptTokenCount`` (which includes the cached tokens) plus
  ``toolUsePromptTokenCount``; ``cached_input_tokens`` = ``cachedContentTokenCount``;
  ``output_tokens`` = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (thinking is billed as
  output), ``reasoning_tokens`` = ``thoughtsTokenCount``.
"""

from __future__ import annotations

from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.providers.codec import new_call_id

_R = types_pb2

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def finish_reason(raw: str | None, *, has_calls: bool) -> int:
    """The contract finish reason for a Gemini ``finishReason``."""
    if not raw or raw == "FINISH_REASON_UNSPECIFIED":
        return _R.FINISH_REASON_UNSPECIFIED
    if raw == "MAX_TOKENS":
        return _R.FINISH_REASON_LENGTH
    if raw in _FILTERED:
        return _R.FINISH_REASON_CONTENT_FILTER
    # Gemini says STOP after function calls too; the caller needs to know calls are waiting.
    return _R.FINISH_REASON_TOOL_CALLS if has_calls else _R.FINISH_REASON_STOP


def fill_usage(usage: types_pb2.Usage, meta: dict[str, Any]) -> None:
    """Sets ``usage`` from a ``usageMetadata`` object."""
    prompt = int(meta.get("promptTokenCount") or 0)
    tool_prompt = int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    usage.input_tokens = prompt + tool_prompt
    usage.cached_input_tokens = int(meta.get("cachedContentTokenCount") or 0)
    usage.output_tokens = int(meta.get("candidatesTokenCount") or 0) + thoughts
    usage.reasoning_tokens = thoughts


def decode_parts(parts: list[dict[str, Any]], content: Any) -> bool:
    """Appends ``parts`` to a repeated ``ContentPart`` field; True when any was a call."""
    has_calls = False
    for part in parts:
        signature = part.get("thoughtSignature") or ""
        call = part.get("functionCall")
        if call is not None:
            has_calls = True
            tc = content.add().tool_call
            tc.id = call.get("id") or new_call_id()
            tc.name = call.get("name") or ""
            tc.arguments = orjson.dumps(call.get("args") or {}).decode()
            tc.signature = signature
            continue
        if "text" not in part:
            # inlineData, executableCode...: output kinds this adapter never asks for.
            if signature:
                content.add().reasoning.signature = signature
            continue
        text = part.get("text") or ""
        if part.get("thought"):
            r = content.add().reasoning
            r.text = text
            r.signature = signature
            continue
        if text:
            content.add().text = text
        if signature:
            content.add().reasoning.signature = signature
    return has_calls


def decode_response(data: dict[str, Any]) -> chat_pb2.ChatResponse:
    """A ``ChatResponse`` (message, finish_reason, usage) from a ``generateContent`` body."""
    response = chat_pb2.ChatResponse()
    response.message.role = _R.ROLE_ASSISTANT
    candidates = data.get("candidates") or []
    if candidates:
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        has_calls = decode_parts(parts, response.message.content)
        response.finish_reason = finish_reason(  # type: ignore[assignment]
            candidate.get("finishReason"), has_calls=has_calls
        )
    elif (data.get("promptFeedback") or {}).get("blockReason"):
        # The prompt itself was blocked: no candidate at all.
        response.finish_reason = _R.FINISH_REASON_CONTENT_FILTER
    fill_usage(response.usage, data.get("usageMetadata") or {})
    return response
