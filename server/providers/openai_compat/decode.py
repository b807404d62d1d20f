"""OpenAI Chat Completions response JSON → ``switchboard.v1`` message, finish reason and usage.

Mirrors ``CreateChatCompletionResponse`` (openai-openapi) plus the fields OpenAI-compatible
upstreams add: ``reasoning_content`` (DeepSeek, vLLM), ``reasoning`` (OpenRouter, Groq),
``prompt_cache_hit_tokens`` (DeepSeek), ``prompt_tokens_details.cache_write_tokens`` (OpenAI
explicit prompt caching) and Mistral's list-shaped ``content`` with ``thinking`` parts.
"""

from __future__ import annotations

import orjson
from switchboard.v1 import types_pb2

from server.providers.codec import Json, new_call_id

FINISH_REASONS = {
    "stop": types_pb2.FINISH_REASON_STOP,
    "length": types_pb2.FINISH_REASON_LENGTH,
    "tool_calls": types_pb2.FINISH_REASON_TOOL_CALLS,
    # The deprecated functions API names the same thing function_call.
    "function_call": types_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": types_pb2.FINISH_REASON_CONTENT_FILTER,
    # Spellings some OpenAI-compatible servers pass through from their native APIs.
    "end_turn": types_pb2.FINISH_REASON_STOP,
    "stop_sequence": types_pb2.FINISH_REASON_STOP,
    "eos": types_pb2.FINISH_REASON_STOP,
    "max_tokens": types_pb2.FINISH_REASON_LENGTH,
    "model_length": types_pb2.FINISH_REASON_LENGTH,
    "tool_use": types_pb2.FINISH_REASON_TOOL_CALLS,
}


def finish_reason(raw: object, has_tool_calls: bool) -> types_pb2.FinishReason:
    """The contract finish reason for an upstream one.

    A reply that carries tool calls is reported as TOOL_CALLS even when the upstream said
    ``stop`` (Gemini's and some vLLM OpenAI-compatible endpoints do): clients drive their tool
    loop from this value.
    """
    mapped = (
        FINISH_REASONS.get(raw, types_pb2.FINISH_REASON_STOP)
        if isinstance(raw, str)
        else (types_pb2.FINISH_REASON_STOP)
    )
    if has_tool_calls and mapped == types_pb2.FINISH_REASON_STOP:
        return types_pb2.FINISH_REASON_TOOL_CALLS
    return mapped


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


def arguments_text(arguments: object) -> str:
    """Tool-call arguments as JSON text; a few servers send an object instead of a string."""
    if isinstance(arguments, str):
        return arguments
    if arguments is None:
        return ""
    return orjson.dumps(arguments).decode()


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
