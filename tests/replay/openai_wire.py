"""Replay helpers for recorded OpenAI-compatible traffic (test-only).

``chat_request_from_openai`` turns a recorded request body into a ``ChatRequest`` (fields the
contract does not model go to ``passthrough``, as the shim does), ``essential`` reduces a
request body to what must survive the round trip, and ``recorded_responses`` turns the
recordings of SOURCES.md into ``Raw`` behaviours for ``FakeOpenAI``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from tests.fakes.common import Raw

_ROLES = {
    "system": types_pb2.ROLE_SYSTEM,
    "developer": types_pb2.ROLE_DEVELOPER,
    "user": types_pb2.ROLE_USER,
    "assistant": types_pb2.ROLE_ASSISTANT,
    "tool": types_pb2.ROLE_TOOL,
}
_MODES = {
    "auto": types_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": types_pb2.TOOL_CHOICE_MODE_NONE,
    "required": types_pb2.TOOL_CHOICE_MODE_REQUIRED,
}
_FORMATS = {
    "text": types_pb2.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    "json_schema": types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}
_MODELLED = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "user",
    "stream",
    "stream_options",
}
# Response headers worth replaying; framing headers (length, encoding) are the server's own.
_KEPT_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def _parts(content: Any) -> list[types_pb2.ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [types_pb2.ContentPart(text=content)]
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append(types_pb2.ContentPart(text=part["text"]))
        elif part.get("type") == "image_url":
            parts.append(
                types_pb2.ContentPart(image=types_pb2.ImagePart(url=part["image_url"]["url"]))
            )
        else:
            raise ValueError(f"unexpected content part {part.get('type')}")
    return parts


def chat_request_from_openai(body: dict[str, Any]) -> chat_pb2.ChatRequest:
    """A recorded OpenAI request body as the contract's ChatRequest."""
    request = chat_pb2.ChatRequest(model=body["model"])
    for wire in body["messages"]:
        message = request.messages.add(role=_ROLES[wire["role"]], name=wire.get("name", ""))
        if wire["role"] == "tool":
            content = wire.get("content")
            text = (
                content
                if isinstance(content, str)
                else " ".join(p["text"] for p in content or [] if p.get("type") == "text")
            )
            message.content.add().tool_result.CopyFrom(
                types_pb2.ToolResult(tool_call_id=wire["tool_call_id"], content=text)
            )
            continue
        message.content.extend(_parts(wire.get("content")))
        for call in wire.get("tool_calls") or []:
            message.content.add().tool_call.CopyFrom(
                types_pb2.ToolCall(
                    id=call["id"],
                    name=call["function"]["name"],
                    arguments=call["function"]["arguments"],
                )
            )
    for tool in body.get("tools") or []:
        function = tool["function"]
        entry = request.tools.add(
            name=function["name"], description=function.get("description", "")
        )
        if "parameters" in function:
            entry.parameters.CopyFrom(_struct(function["parameters"]))
        if "strict" in function:
            entry.strict = function["strict"]
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        request.tool_choice.mode = _MODES[choice]
    elif isinstance(choice, dict):
        request.tool_choice.function_name = choice["function"]["name"]
    if "parallel_tool_calls" in body:
        request.parallel_tool_calls = body["parallel_tool_calls"]
    response_format = body.get("response_format")
    if response_format:
        request.response_format.type = _FORMATS[response_format["type"]]
        spec = response_format.get("json_schema")
        if spec:
            schema = request.response_format.json_schema
            schema.name = spec.get("name", "")
            schema.description = spec.get("description", "")
            if "schema" in spec:
                schema.schema.CopyFrom(_struct(spec["schema"]))
            if "strict" in spec:
                schema.strict = spec["strict"]
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "n"):
        if body.get(name) is not None:
            setattr(request, name, body[name])
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        request.max_tokens = limit
    stop = body.get("stop")
    if stop:
        request.stop.extend([stop] if isinstance(stop, str) else stop)
    if body.get("user"):
        request.user = body["user"]
    extra = {k: v for k, v in body.items() if k not in _MODELLED}
    if extra:
        request.passthrough.CopyFrom(_struct(extra))
    return request


def _content_key(content: Any) -> list[Any]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def essential(body: dict[str, Any]) -> dict[str, Any]:
    """What of a request body must survive the round trip; wire spellings that mean the same
    (``max_tokens``/``max_completion_tokens``, absent/``null`` content, ``stream: false``,
    empty descriptions) are unified. Content parts are compared whole."""
    messages = []
    for message in body["messages"]:
        entry: dict[str, Any] = {"role": message["role"]}
        entry["content"] = _content_key(message.get("content"))
        for key in ("name", "tool_call_id", "refusal"):
            if message.get(key):
                entry[key] = message[key]
        if message.get("tool_calls"):
            entry["tool_calls"] = [
                (c["id"], c["function"]["name"], c["function"]["arguments"])
                for c in message["tool_calls"]
            ]
        messages.append(entry)
    tools = []
    for tool in body.get("tools") or []:
        function = {k: v for k, v in tool["function"].items() if not (k == "description" and not v)}
        tools.append(function)
    rest = {
        k: v
        for k, v in body.items()
        if k not in ("messages", "tools", "stream", "max_tokens", "max_completion_tokens")
    }
    rest["stream"] = bool(body.get("stream"))
    rest["max_tokens"] = body.get("max_completion_tokens", body.get("max_tokens"))
    return {"messages": messages, "tools": tools, **rest}


def load_cassette(path: Path) -> list[dict[str, Any]]:
    """The interactions of a VCR cassette."""
    with path.open() as handle:
        return list(
            yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["interactions"]
        )


def cassette_response(interaction: dict[str, Any]) -> Raw:
    """A recorded response as a FakeOpenAI behaviour, byte for byte for SSE bodies."""
    response = interaction["response"]
    headers = {k.lower(): v[0] for k, v in response.get("headers", {}).items()}
    content_type = headers.get("content-type", "application/json").split(";")[0]
    if "parsed_body" in response:
        body = orjson.dumps(response["parsed_body"])
    else:
        body = response["body"]["string"].encode()
    return Raw(
        body,
        status=response["status"]["code"],
        content_type=content_type,
        headers={k: headers[k] for k in _KEPT_HEADERS if k in headers},
    )


def chunks_body(path: Path) -> bytes:
    """A vercel-ai ``*.chunks.txt`` recording with its OpenAI SSE framing put back."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return b"".join(b"data: " + line.encode() + b"\n\n" for line in lines) + b"data: [DONE]\n\n"


async def post_json(url: str, key: str, body: Any) -> tuple[int, str, str]:
    """POSTs ``body`` as JSON with a gateway key; (status, content type, body text)."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=orjson.dumps(body),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        ) as response,
    ):
        return response.status, response.headers.get("content-type", ""), await response.text()
