"""Checks every transport's requests get, once, in the core; and the bounds on their size.

``RequestBounds`` says how many messages, content parts and tools one request may carry. The
HTTP dialects apply it to the decoded JSON before validating it (``http_shim.schema``), so an
oversized body is refused before pydantic walks it; the core applies it to every contract
request (gRPC's included) before routing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import FieldViolation, InvalidRequestError, RequestTooLargeError

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class RequestBounds:
    """How much one request may carry (``limits`` in the config file)."""

    messages: int = 4096
    parts: int = 16384
    tools: int = 512

    def check(self, messages: int, parts: int, tools: int) -> None:
        """Raises RequestTooLargeError (413) naming the first count over its bound."""
        for field, noun, count, bound in (
            ("messages", "messages", messages, self.messages),
            ("messages[].content", "content parts", parts, self.parts),
            ("tools", "tools", tools, self.tools),
        ):
            if count > bound:
                raise RequestTooLargeError(
                    f"Request too large: {count} {noun}, at most {bound} are accepted.",
                    param=field,
                )


DEFAULT_BOUNDS = RequestBounds()
# The optional scalars with a range: (field, low, high, violation).
_RANGES = (
    ("temperature", 0.0, 2.0, "temperature must be between 0 and 2"),
    ("top_p", 0.0, 1.0, "top_p must be between 0 and 1"),
    ("presence_penalty", -2.0, 2.0, "presence_penalty must be between -2 and 2"),
    ("frequency_penalty", -2.0, 2.0, "frequency_penalty must be between -2 and 2"),
)


def validate_chat_request(
    request: chat_pb2.ChatRequest, bounds: RequestBounds = DEFAULT_BOUNDS
) -> None:
    """Raises InvalidRequestError (with BadRequest field violations) for a malformed request,
    RequestTooLargeError for one past ``bounds``.

    Runs on every request: each repeated field is read once and the messages are walked once
    (a protobuf attribute read costs about as much as a Python call)."""
    messages = request.messages
    tools = request.tools
    # ``bounds`` first on the counts alone, so that a request of a million messages is refused
    # before the walk below, then on the content parts that walk counts.
    bounds.check(len(messages), 0, len(tools))
    violations: list[FieldViolation] = []
    parts = 0
    for i, message in enumerate(messages):
        parts += len(message.content)
        if message.role == types_pb2.ROLE_UNSPECIFIED:
            violations.append(FieldViolation(f"messages[{i}].role", "role is required"))
    bounds.check(len(messages), parts, len(tools))
    if not messages:
        violations.insert(0, FieldViolation("messages", "at least one message is required"))
    if not request.model:
        violations.insert(0, FieldViolation("model", "model is required"))
    if request.HasField("n") and request.n != 1:
        violations.append(FieldViolation("n", "only n=1 is supported"))
    if request.HasField("max_tokens") and request.max_tokens < 1:
        violations.append(FieldViolation("max_tokens", "max_tokens must be at least 1"))
    for name, low, high, text in _RANGES:
        if request.HasField(name) and not low <= getattr(request, name) <= high:
            violations.append(FieldViolation(name, text))
    if len(request.stop) > 4:
        violations.append(FieldViolation("stop", "at most 4 stop sequences are allowed"))
    names = set()
    for i, tool in enumerate(tools):
        if not _TOOL_NAME.match(tool.name):
            violations.append(
                FieldViolation(
                    f"tools[{i}].function.name",
                    "tool names must be 1-64 characters of a-z, A-Z, 0-9, _ or -",
                )
            )
        names.add(tool.name)
    if request.HasField("tool_choice"):
        choice = request.tool_choice
        if choice.WhichOneof("choice") == "function_name" and choice.function_name not in names:
            violations.append(
                FieldViolation("tool_choice", f"unknown tool {choice.function_name!r}")
            )
    if request.HasField("response_format"):
        rf = request.response_format
        if rf.type == types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA and not rf.json_schema.name:
            violations.append(
                FieldViolation("response_format.json_schema.name", "json_schema needs a name")
            )
    if violations:
        raise InvalidRequestError.of(violations)


# Inputs one embedding request may carry (OpenAI's own limit per request).
MAX_EMBED_INPUTS = 2048


def validate_embed_request(request: chat_pb2.EmbedRequest) -> None:
    """Raises InvalidRequestError for a malformed embedding request, RequestTooLargeError for
    one of more than ``MAX_EMBED_INPUTS`` inputs."""
    count = len(request.inputs)
    if count > MAX_EMBED_INPUTS:
        raise RequestTooLargeError(
            f"Request too large: {count} inputs, at most {MAX_EMBED_INPUTS} are accepted.",
            param="input",
        )
    violations: list[FieldViolation] = []
    if not request.model:
        violations.append(FieldViolation("model", "model is required"))
    if not count:
        violations.append(FieldViolation("input", "at least one input is required"))
    for i, item in enumerate(request.inputs):
        kind = item.WhichOneof("input")
        if (kind == "text" and not item.text) or (kind == "tokens" and not item.tokens.ids):
            violations.append(FieldViolation(f"input[{i}]", "an input may not be empty"))
        elif kind is None:
            violations.append(FieldViolation(f"input[{i}]", "an input needs text or tokens"))
    if request.HasField("dimensions") and request.dimensions < 1:
        violations.append(FieldViolation("dimensions", "dimensions must be at least 1"))
    if violations:
        raise InvalidRequestError.of(violations)
