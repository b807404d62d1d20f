"""Anthropic Messages API JSON ⇄ ``switchboard.v1`` (the inbound ``/v1/messages`` edge).

Request (``decode_request``): ``system`` (a string or text blocks) → one ROLE_SYSTEM message;
user/assistant ``content`` (a string or blocks) → contract parts: ``text``, ``image`` (a base64
source → bytes + media_type, a url source → url), ``tool_use`` → ToolCall (arguments = the JSON
of ``input``), ``thinking`` / ``redacted_thinking`` → ReasoningPart, and each ``tool_result`` →
one ROLE_TOOL message, in order, ahead of the user's other content of that turn (the order
OpenAI-style upstreams require). ``tools``, ``tool_choice`` (any → REQUIRED, tool → function
name, ``disable_parallel_tool_use`` → parallel_tool_calls=false), ``max_tokens`` (required, as
Anthropic requires it), ``temperature``, ``top_p``, ``stop_sequences``, ``metadata.user_id`` →
user, ``output_config.format`` (json_schema) → response_format; ``top_k`` and every unknown
field travel in ``passthrough``. ``cache_control`` markers on blocks and tools are accepted and
ignored: the contract has no per-block cache hint, and they never change what a model answers.

Response (``encode_response``) and stream (``StreamEncoder``): contract → Anthropic JSON / SSE
events. Usage follows Anthropic's convention: ``input_tokens`` EXCLUDES cache reads and writes,
which are reported as ``cache_read_input_tokens`` / ``cache_creation_input_tokens``.

Tool-call arguments that are not a JSON object (models emit invalid JSON) cannot be an
Anthropic ``input``; non-streamed they become ``{"_raw_arguments": "<text as produced>"}`` so
nothing is lost (sent back in a later turn, that object is what the upstream sees: valid JSON
every upstream accepts); streamed they are forwarded as produced in ``input_json_delta``.
The contract does not say which stop sequence matched, so a stop is always ``end_turn`` and
``stop_sequence`` is null.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import GatewayError, InvalidRequestError, UnsupportedFeatureError

_R = types_pb2
Json = dict[str, Any]

# Wrapper key for tool-call arguments that are not a JSON object (see the module docstring).
RAW_ARGUMENTS_KEY = "_raw_arguments"

# Request fields this module maps; anything else goes to passthrough unchanged.
_MAPPED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "metadata",
        "stream",
        "tools",
        "tool_choice",
    }
)

_TOOL_CHOICE_MODES = {
    "auto": _R.TOOL_CHOICE_MODE_AUTO,
    "any": _R.TOOL_CHOICE_MODE_REQUIRED,
    "none": _R.TOOL_CHOICE_MODE_NONE,
}

STOP_REASONS: dict[int, str] = {
    _R.FINISH_REASON_UNSPECIFIED: "end_turn",
    _R.FINISH_REASON_STOP: "end_turn",
    _R.FINISH_REASON_LENGTH: "max_tokens",
    _R.FINISH_REASON_TOOL_CALLS: "tool_use",
    _R.FINISH_REASON_CONTENT_FILTER: "refusal",
}

# HTTP status → Anthropic error type (docs.claude.com/en/api/errors, anthropic-python ErrorType).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _invalid(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


# --- request --------------------------------------------------------------------------------


def decode_request(data: object) -> tuple[chat_pb2.ChatRequest, bool]:
    """A ``ChatRequest`` and the ``stream`` flag from a Messages API request body."""
    if not isinstance(data, dict):
        raise _invalid("the request body must be a JSON object", "body")
    request = chat_pb2.ChatRequest()
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("field required", "model")
    request.model = model
    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        raise _invalid("field required", "max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise _invalid("must be an integer of at least 1", "max_tokens")
    request.max_tokens = min(max_tokens, 2**31 - 1)

    messages = request.messages
    system = data.get("system")
    if system is not None:
        text = _system_text(system)
        if text:
            m = messages.add()
            m.role = _R.ROLE_SYSTEM
            m.content.add().text = text
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise _invalid("field required (a list of messages)", "messages")
    tool_names: dict[str, str] = {}
    for i, raw in enumerate(raw_messages):
        _decode_message(raw, i, messages, tool_names)

    for name in ("temperature", "top_p"):
        value = data.get(name)
        if value is not None:
            if not _is_number(value):
                raise _invalid("must be a number", name)
            setattr(request, name, float(value))
    stop = data.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _invalid("must be a list of strings", "stop_sequences")
        request.stop.extend(stop)
    metadata = data.get("metadata")
    if metadata is not None:
        _metadata(metadata, request)
    tools = data.get("tools")
    if tools is not None:
        _tools(tools, request)
    choice = data.get("tool_choice")
    if choice is not None:
        _tool_choice(choice, request)

    passthrough = {k: v for k, v in data.items() if k not in _MAPPED}
    output_config = passthrough.get("output_config")
    if isinstance(output_config, dict) and _output_format(output_config, request):
        rest = {k: v for k, v in output_config.items() if k != "format"}
        if rest:
            passthrough["output_config"] = rest
        else:
            del passthrough["output_config"]
    if passthrough:
        try:
            request.passthrough.update(passthrough)
        except (TypeError, ValueError) as exc:
            raise _invalid(f"cannot carry unknown field: {exc}", "body") from None

    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid("must be a boolean", "stream")
    return request, stream


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _system_text(system: object) -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise _invalid("must be a string or a list of text blocks", "system")
    texts: list[str] = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _invalid("only text blocks are allowed", f"system[{j}]")
        text = block.get("text")
        if not isinstance(text, str):
            raise _invalid("field required", f"system[{j}].text")
        texts.append(text)
    # Anthropic concatenates system blocks; a blank line keeps them apart for any upstream.
    return "\n\n".join(t for t in texts if t)


def _decode_message(raw: object, i: int, messages: Any, tool_names: dict[str, str]) -> None:
    param = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise _invalid("must be an object", param)
    role = raw.get("role")
    content = raw.get("content")
    if role not in ("user", "assistant"):
        raise _invalid("role must be 'user' or 'assistant'", f"{param}.role")
    if isinstance(content, str):
        m = messages.add()
        m.role = _R.ROLE_USER if role == "user" else _R.ROLE_ASSISTANT
        m.content.add().text = content
        return
    if not isinstance(content, list):
        raise _invalid("must be a string or a list of content blocks", f"{param}.content")
    if role == "assistant":
        m = messages.add()
        m.role = _R.ROLE_ASSISTANT
        for j, block in enumerate(content):
            _assistant_block(block, f"{param}.content[{j}]", m.content, tool_names)
        return
    user = types_pb2.Message(role=_R.ROLE_USER)
    for j, block in enumerate(content):
        bparam = f"{param}.content[{j}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            t = messages.add()
            t.role = _R.ROLE_TOOL
            _tool_result(block, bparam, t.content.add().tool_result, tool_names)
        else:
            _user_block(block, bparam, user.content)
    if user.content:
        messages.append(user)


def _block_type(block: object, param: str) -> str:
    if not isinstance(block, dict):
        raise _invalid("a content block must be an object", param)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _invalid("field required", f"{param}.type")
    return kind


def _text_of(block: Json, param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid("field required", f"{param}.text")
    return text


def _user_block(block: object, param: str, parts: Any) -> None:
    kind = _block_type(block, param)
    assert isinstance(block, dict)
    if kind == "text":
        parts.add().text = _text_of(block, param)
    elif kind == "image":
        _image(block, param, parts.add().image)
    else:
        raise UnsupportedFeatureError(
            f"{param}: content blocks of type {kind!r} are not supported in user messages",
            param=param,
        )


def _assistant_block(block: object, param: str, parts: Any, tool_names: dict[str, str]) -> None:
    kind = _block_type(block, param)
    assert isinstance(block, dict)
    if kind == "text":
        parts.add().text = _text_of(block, param)
    elif kind == "tool_use":
        call = parts.add().tool_call
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise _invalid("field required", f"{param}.id")
        if not isinstance(name, str) or not name:
            raise _invalid("field required", f"{param}.name")
        call.id = call_id
        call.name = name
        tool_names[call_id] = name
        call.arguments = orjson.dumps(block.get("input", {})).decode()
    elif kind == "thinking":
        r = parts.add().reasoning
        thinking = block.get("thinking")
        if not isinstance(thinking, str):
            raise _invalid("field required", f"{param}.thinking")
        r.text = thinking
        signature = block.get("signature")
        if isinstance(signature, str):
            r.signature = signature
    elif kind == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str):
            raise _invalid("field required", f"{param}.data")
        parts.add().reasoning.redacted_data = data
    else:
        raise UnsupportedFeatureError(
            f"{param}: content blocks of type {kind!r} are not supported in assistant messages",
            param=param,
        )


def _image(block: Json, param: str, image: types_pb2.ImagePart) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid("field required", f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not media_type:
            raise _invalid("field required", f"{param}.source.media_type")
        if not isinstance(data, str):
            raise _invalid("field required", f"{param}.source.data")
        try:
            image.data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("is not valid base64", f"{param}.source.data") from None
        image.media_type = media_type
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise _invalid("field required", f"{param}.source.url")
        image.url = url
    else:
        raise UnsupportedFeatureError(
            f"{param}.source: image sources of type {kind!r} are not supported",
            param=f"{param}.source.type",
        )


def _tool_result(
    block: Json, param: str, result: types_pb2.ToolResult, tool_names: dict[str, str]
) -> None:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid("field required", f"{param}.tool_use_id")
    result.tool_call_id = call_id
    name = tool_names.get(call_id)
    if name:
        result.name = name
    content = block.get("content")
    if isinstance(content, str):
        result.content = content
    elif isinstance(content, list):
        texts = []
        for k, inner in enumerate(content):
            iparam = f"{param}.content[{k}]"
            if _block_type(inner, iparam) != "text":
                raise UnsupportedFeatureError(
                    f"{iparam}: tool results can only hold text here", param=iparam
                )
            assert isinstance(inner, dict)
            texts.append(_text_of(inner, iparam))
        result.content = "\n".join(texts)
    elif content is not None:
        raise _invalid("must be a string or a list of text blocks", f"{param}.content")
    is_error = block.get("is_error")
    if is_error is not None:
        if not isinstance(is_error, bool):
            raise _invalid("must be a boolean", f"{param}.is_error")
        result.is_error = is_error


def _metadata(metadata: object, request: chat_pb2.ChatRequest) -> None:
    if not isinstance(metadata, dict):
        raise _invalid("must be an object", "metadata")
    for key, value in metadata.items():
        if key != "user_id":
            # Anthropic's metadata has only user_id and rejects anything else the same way.
            raise _invalid("extra inputs are not permitted", f"metadata.{key}")
        if value is None:
            continue
        if not isinstance(value, str):
            raise _invalid("must be a string", "metadata.user_id")
        request.user = value


def _tools(tools: object, request: chat_pb2.ChatRequest) -> None:
    if not isinstance(tools, list):
        raise _invalid("must be a list", "tools")
    for i, raw in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(raw, dict):
            raise _invalid("must be an object", param)
        kind = raw.get("type")
        if kind not in (None, "custom"):
            raise UnsupportedFeatureError(
                f"{param}: server tools ({kind!r}) are not supported; declare client tools "
                "with name, description and input_schema",
                param=f"{param}.type",
            )
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("field required", f"{param}.name")
        tool = request.tools.add()
        tool.name = name
        description = raw.get("description")
        if isinstance(description, str):
            tool.description = description
        schema = raw.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid("field required (a JSON schema object)", f"{param}.input_schema")
        try:
            tool.parameters.update(schema)
        except (TypeError, ValueError):
            raise _invalid("is not a valid JSON schema object", f"{param}.input_schema") from None
        strict = raw.get("strict")
        if isinstance(strict, bool):
            tool.strict = strict


def _tool_choice(choice: object, request: chat_pb2.ChatRequest) -> None:
    if not isinstance(choice, dict):
        raise _invalid("must be an object", "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("field required", "tool_choice.name")
        request.tool_choice.function_name = name
    elif kind in _TOOL_CHOICE_MODES:
        request.tool_choice.mode = _TOOL_CHOICE_MODES[kind]
    else:
        raise _invalid("type must be one of auto, any, tool, none", "tool_choice.type")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None:
        if not isinstance(disable, bool):
            raise _invalid("must be a boolean", "tool_choice.disable_parallel_tool_use")
        request.parallel_tool_calls = not disable


def _output_format(output_config: Json, request: chat_pb2.ChatRequest) -> bool:
    """Maps ``output_config.format`` (json_schema) to response_format; False leaves it alone."""
    fmt = output_config.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return False
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise _invalid("field required (a JSON schema object)", "output_config.format.schema")
    rf = request.response_format
    rf.type = _R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    # The contract (like OpenAI) names every schema; Anthropic's are anonymous.
    rf.json_schema.name = "output"
    try:
        rf.json_schema.schema.update(schema)
    except (TypeError, ValueError):
        raise _invalid("is not a valid JSON schema", "output_config.format.schema") from None
    return True


# --- response -------------------------------------------------------------------------------


def message_id(request_id: str) -> str:
    """Anthropic-style message id for a gateway request id."""
    return f"msg_{request_id}"


def tool_input(arguments: str) -> Json:
    """An Anthropic ``input`` object for contract tool-call arguments (see module docstring)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: arguments}


def _tool_use_id(call_id: str) -> str:
    return call_id or f"toolu_{os.urandom(12).hex()}"


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


def stop_reason(finish_reason: int, has_tool_calls: bool) -> str:
    """Anthropic ``stop_reason`` for a contract finish reason."""
    reason = STOP_REASONS.get(finish_reason, "end_turn")
    if reason == "end_turn" and has_tool_calls:
        # Clients drive their tool loop from stop_reason == "tool_use".
        return "tool_use"
    return reason


def response_json(response: chat_pb2.ChatResponse) -> Json:
    """The Messages API response object for a finished completion."""
    content: list[Json] = []
    has_tools = False
    for part in response.message.content:
        kind = part.WhichOneof("part")
        if kind == "text":
            if content and content[-1]["type"] == "text":
                content[-1]["text"] += part.text
            else:
                content.append({"type": "text", "text": part.text})
        elif kind == "tool_call":
            has_tools = True
            call = part.tool_call
            content.append(
                {
                    "type": "tool_use",
                    "id": _tool_use_id(call.id),
                    "name": call.name,
                    "input": tool_input(call.arguments),
                }
            )
        elif kind == "reasoning":
            r = part.reasoning
            if r.redacted_data:
                content.append({"type": "redacted_thinking", "data": r.redacted_data})
            else:
                content.append({"type": "thinking", "thinking": r.text, "signature": r.signature})
    if response.message.refusal and not any(c["type"] == "text" for c in content):
        content.append({"type": "text", "text": response.message.refusal})
    return {
        "id": message_id(response.id),
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason(response.finish_reason, has_tools),
        "stop_sequence": None,
        "usage": usage_json(response.usage),
    }


def encode_response(response: chat_pb2.ChatResponse) -> bytes:
    """The Messages API response body for a finished completion."""
    return orjson.dumps(response_json(response))


# --- errors ---------------------------------------------------------------------------------


def error_type(status: int) -> str:
    """Anthropic error type for an HTTP status."""
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_json(status: int, message: str, request_id: str | None = None) -> Json:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    body: Json = {"type": "error", "error": {"type": error_type(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def encode_error(exc: GatewayError, request_id: str | None = None) -> bytes:
    """The JSON error body for a gateway error."""
    return orjson.dumps(error_json(exc.http_status, exc.message, request_id))


# --- streaming ------------------------------------------------------------------------------


def sse_event(name: str, data: Json) -> bytes:
    """One SSE event with Anthropic's ``event:`` line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


MESSAGE_STOP = sse_event("message_stop", {"type": "message_stop"})
PING = sse_event("ping", {"type": "ping"})

_TEXT, _TOOL, _THINKING = 1, 2, 3


class StreamEncoder:
    """Contract stream frames → Anthropic SSE events, with correct content block indexes.

    One block is open at a time, as in Anthropic's own streams: a new one starts when the kind
    (thinking, text, tool_use) changes. Anthropic blocks never reopen, but OpenAI-style
    upstreams may interleave the argument fragments of parallel tool calls. So the first tool
    call of a run streams live, and a call that starts while another tool block is open is
    held back and sent whole (start, one ``input_json_delta``, stop) when that block closes:
    the event sequence stays exact and no fragment is lost.
    """

    __slots__ = (
        "_has_tools",
        "_head",
        "_held",
        "_index",
        "_kind",
        "_model",
        "_tool",
        "_tool_blocks",
    )

    def __init__(self, model: str) -> None:
        self._model = model
        self._index = -1
        self._kind = 0
        # Contract tool-call index of the open tool_use block, else -1.
        self._tool = -1
        # Contract tool-call index → Anthropic block index, for calls already sent.
        self._tool_blocks: dict[int, int] = {}
        # Calls held back while another tool block is open: index → ([id, name], fragments).
        self._held: dict[int, tuple[list[str], list[str]]] = {}
        self._has_tools = False
        # `event: content_block_delta` up to the delta type for the open block: text deltas
        # are most of a stream, so they are built from bytes instead of a dict each.
        self._head = b""

    def encode(self, frame: chat_pb2.StreamChatResponse) -> bytes:
        """The SSE bytes for one frame (possibly several events, possibly none)."""
        kind = frame.WhichOneof("frame")
        if kind == "text":
            text = frame.text.text
            if not text:
                return b""
            head = b"" if self._kind == _TEXT else self._open(_TEXT, {"type": "text", "text": ""})
            return head + self._head + b'"text_delta","text":' + orjson.dumps(text) + b"}}\n\n"
        if kind == "tool_call":
            return self._tool_call(frame.tool_call)
        if kind == "reasoning":
            return self._reasoning(frame.reasoning)
        if kind == "start":
            return self.start(frame.start)
        if kind == "end":
            return self.end(frame.end)
        return b""

    def start(self, start: chat_pb2.StreamStart) -> bytes:
        """``message_start``; input usage is not known yet and arrives in ``message_delta``."""
        message: Json = {
            "id": message_id(start.id),
            "type": "message",
            "role": "assistant",
            "model": start.model or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def end(self, end: chat_pb2.StreamEnd) -> bytes:
        """Closes the open block, then ``message_delta`` (stop reason, final usage), stop."""
        out = self._close()
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(end.finish_reason, self._has_tools),
                "stop_sequence": None,
            },
            "usage": usage_json(end.usage),
        }
        return out + sse_event("message_delta", delta) + MESSAGE_STOP

    def _tool_call(self, delta: chat_pb2.ToolCallDelta) -> bytes:
        self._has_tools = True
        index = delta.index
        if index == self._tool:
            return self._arguments(self._index, delta.arguments)
        held = self._held.get(index)
        if held is not None:
            held[0][0] = held[0][0] or delta.id
            held[0][1] = held[0][1] or delta.name
            held[1].append(delta.arguments)
            return b""
        block = self._tool_blocks.get(index)
        if block is not None:
            # Only after held calls were flushed by a text or thinking block in between; the
            # fragment goes on the call's own index, where every SDK accumulates it.
            return self._arguments(block, delta.arguments)
        if self._kind == _TOOL:
            self._held[index] = ([delta.id, delta.name], [delta.arguments])
            return b""
        out = self._open(_TOOL, _tool_block(delta.id, delta.name))
        self._tool = index
        self._tool_blocks[index] = self._index
        return out + self._arguments(self._index, delta.arguments)

    def _arguments(self, block: int, fragment: str) -> bytes:
        if not fragment:
            return b""
        live = block == self._index and self._kind == _TOOL
        head = self._head if live else _delta_head(block)
        return head + b'"input_json_delta","partial_json":' + orjson.dumps(fragment) + b"}}\n\n"

    def _reasoning(self, delta: chat_pb2.ReasoningDelta) -> bytes:
        if delta.redacted_data:
            # A redacted block is complete in one frame: start and stop it at once.
            out = self._open(_THINKING, {"type": "redacted_thinking", "data": delta.redacted_data})
            return out + self._close()
        if not delta.text and not delta.signature:
            return b""
        out = b""
        if self._kind != _THINKING:
            out = self._open(_THINKING, {"type": "thinking", "thinking": "", "signature": ""})
        if delta.text:
            out += self._delta({"type": "thinking_delta", "thinking": delta.text})
        if delta.signature:
            out += self._delta({"type": "signature_delta", "signature": delta.signature})
        return out

    def _open(self, kind: int, block: Json) -> bytes:
        out = self._close()
        self._index += 1
        self._kind = kind
        self._head = _delta_head(self._index)
        return out + _block_start(self._index, block)

    def _close(self) -> bytes:
        """Stops the open block, then sends every held-back tool call as a whole block."""
        if not self._kind:
            return b""
        out = _block_stop(self._index)
        self._kind = 0
        self._tool = -1
        for index, ((call_id, name), fragments) in self._held.items():
            self._index += 1
            self._tool_blocks[index] = self._index
            out += _block_start(self._index, _tool_block(call_id, name))
            out += self._arguments(self._index, "".join(fragments))
            out += _block_stop(self._index)
        self._held.clear()
        return out

    def _delta(self, delta: Json) -> bytes:
        return sse_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )


def _delta_head(index: int) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
        + str(index).encode()
        + b',"delta":{"type":'
    )


def _tool_block(call_id: str, name: str) -> Json:
    return {"type": "tool_use", "id": _tool_use_id(call_id), "name": name, "input": {}}


def _block_start(index: int, block: Json) -> bytes:
    return sse_event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _block_stop(index: int) -> bytes:
    return sse_event("content_block_stop", {"type": "content_block_stop", "index": index})


def stream_error_event(status: int, message: str) -> bytes:
    """An in-stream ``error`` event (after a 200 has gone out)."""
    return sse_event("error", error_json(status, message))
