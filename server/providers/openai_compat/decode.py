"""OpenAI Chat Completions response JSON → ``switchboard.v1`` message, finish reason and usage.

Mirrors ``CreateChatCompletionResponse`` (openai-openapi) plus the fields OpenAI-compatible
upstreams add: ``reasoning_content`` (DeepSeek, vLLM), ``reasoning`` (OpenRouter, Groq),
``prompt_cache_hit_tokens`` (DeepSeek), ``prompt_tokens_details.cache_write_tokens`` (OpenAI
explicit prompt caching) and Mistral's list-shaped ``content`` with ``thinking`` parts. Usage,
finish reasons and tool-call arguments are read with ``codec`` (shared with the dialect).
"""

from __future__ import annotations

from switchboard.v1 import types_pb2

from server.providers.codec import Json, new_call_id
from server.providers.openai_compat.codec import arguments_text, decode_usage, finish_reason


def reasoning_text(source: Json) -> str:
    """DeepSeek/vLLM ``reasoning_content`` or OpenRouter/Groq ``reasoning``."""
    value = source.get("reasoning_content")
    if not isinstance(value, str) or not value:
        value = source.get("reasoning")
    return value if isinstance(value, str) else ""


def content_parts(content: object) -> tuple[str, str]:
    """(text, reasoning) from a ``content`` that is a string or Mistral's list of parts."""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        return "", ""
    texts: list[str] = []
    thoughts: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "thinking":
            thinking = part.get("thinking")
            if isinstance(thinking, str):
                thoughts.append(thinking)
            elif isinstance(thinking, list):
                thoughts.extend(
                    item["text"]
                    for item in thinking
                    if isinstance(item, dict) and isinstance(item.get("text"), str)
                )
    return "".join(texts), "".join(thoughts)


def decode_response(
    body: Json,
) -> tuple[types_pb2.Message, types_pb2.FinishReason, types_pb2.Usage]:
    """A ``chat.completion`` body → (assistant message, finish reason, usage); choice 0 only,
    since the contract allows n=1."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    if not isinstance(choice, dict):
        choice = {}
    raw = choice.get("message")
    wire: Json = raw if isinstance(raw, dict) else {}
    message = types_pb2.Message(role=types_pb2.ROLE_ASSISTANT)
    text, thought = content_parts(wire.get("content"))
    thought = reasoning_text(wire) or thought
    if thought:
        message.content.add().reasoning.text = thought
    if text:
        message.content.add().text = text
    calls = wire.get("tool_calls")
    has_calls = False
    if isinstance(calls, list):
        for call in calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function")
            if not isinstance(function, dict):
                function = {}
            _add_call(message, call.get("id"), function.get("name"), function.get("arguments"))
            has_calls = True
    legacy = wire.get("function_call")
    if isinstance(legacy, dict):
        _add_call(message, None, legacy.get("name"), legacy.get("arguments"))
        has_calls = True
    refusal = wire.get("refusal")
    if isinstance(refusal, str):
        message.refusal = refusal
    return (
        message,
        finish_reason(choice.get("finish_reason"), has_calls),
        decode_usage(body.get("usage")),
    )


def _add_call(message: types_pb2.Message, call_id: object, name: object, arguments: object) -> None:
    part = message.content.add().tool_call
    part.id = call_id if isinstance(call_id, str) and call_id else new_call_id()
    part.name = name if isinstance(name, str) else ""
    part.arguments = arguments_text(arguments)
