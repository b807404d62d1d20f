"""Checks every transport's requests get, once, in the core."""

from __future__ import annotations

import re

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import FieldViolation, InvalidRequestError

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_chat_request(request: chat_pb2.ChatRequest) -> None:
    """Raises InvalidRequestError (with BadRequest field violations) for a malformed request."""
    violations: list[FieldViolation] = []
    if not request.model:
        violations.append(FieldViolation("model", "model is required"))
    if not request.messages:
        violations.append(FieldViolation("messages", "at least one message is required"))
    for i, message in enumerate(request.messages):
        if message.role == types_pb2.ROLE_UNSPECIFIED:
            violations.append(FieldViolation(f"messages[{i}].role", "role is required"))
    if request.HasField("n") and request.n != 1:
        violations.append(FieldViolation("n", "only n=1 is supported"))
    if request.HasField("max_tokens") and request.max_tokens < 1:
        violations.append(FieldViolation("max_tokens", "max_tokens must be at least 1"))
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        violations.append(FieldViolation("temperature", "temperature must be between 0 and 2"))
    if request.HasField("top_p") and not 0.0 <= request.top_p <= 1.0:
        violations.append(FieldViolation("top_p", "top_p must be between 0 and 1"))
    for name in ("presence_penalty", "frequency_penalty"):
        if request.HasField(name) and not -2.0 <= getattr(request, name) <= 2.0:
            violations.append(FieldViolation(name, f"{name} must be between -2 and 2"))
    if len(request.stop) > 4:
        violations.append(FieldViolation("stop", "at most 4 stop sequences are allowed"))
    names = set()
    for i, tool in enumerate(request.tools):
        if not _TOOL_NAME.match(tool.name):
            violations.append(
                FieldViolation(
                    f"tools[{i}].function.name",
                    "tool names must be 1-64 characters of a-z, A-Z, 0-9, _ or -",
                )
            )
        names.add(tool.name)
    choice = request.tool_choice
    if choice.WhichOneof("choice") == "function_name" and choice.function_name not in names:
        violations.append(FieldViolation("tool_choice", f"unknown tool {choice.function_name!r}"))
    rf = request.response_format
    if rf.type == types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA and not rf.json_schema.name:
        violations.append(
            FieldViolation("response_format.json_schema.name", "json_schema needs a name")
        )
    if violations:
        raise InvalidRequestError.of(violations)
