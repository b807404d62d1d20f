"""What every dialect's request schema shares: the strict pydantic base, union tags, parsing a
body, pydantic errors as a 400 naming the caller's field, and JSON values into ``Struct``.

Each dialect (``openai_schema``, ``anthropic_schema``) describes its wire request with models
built on ``Wire``; union members carry ``~``-prefixed tags so that an error location reads like
the caller's field path once the tags are dropped (``messages[0].content[1].image_url.url``).
Values the contract holds as a ``Struct`` (tool schemas, passthrough fields) are bounded in
depth here, so that nothing deeper than ``MAX_JSON_DEPTH`` reaches an adapter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from google.protobuf import struct_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.core.errors import FieldViolation, InvalidRequestError
from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.providers.codec import MAX_JSON_DEPTH, too_deep

INT32 = 2**31 - 1
INT64 = 2**63 - 1
Int32 = Annotated[int, Field(ge=-INT32 - 1, le=INT32)]
Int64 = Annotated[int, Field(ge=-INT64 - 1, le=INT64)]
TOO_DEEP = f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)"

# A request body: strict, and every field the dialect does not model kept in `model_extra`.
REQUEST_CONFIG = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
# At most this many field errors are listed in one 400.
_MAX_VIOLATIONS = 10

Model = TypeVar("Model", bound=BaseModel)


class Wire(BaseModel):
    """Base of the nested wire models (mirrors the vendors' own strict request validation)."""

    # Strict like the vendors ("temperature": "0.5" is a 400); unknown nested fields (e.g.
    # `audio` or `citations` echoed back from an SDK's message object) are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


def kind_tag(value: Any) -> str | None:
    """Union tag by JSON kind: ``~str``, ``~list`` or ``~object``."""
    if isinstance(value, str):
        return "~str"
    if isinstance(value, list):
        return "~list"
    if isinstance(value, dict):
        return "~object"
    return None


def type_tag(*types: str, other: str | None = None) -> Callable[[Any], str | None]:
    """Union tag by the ``type`` field: ``~<type>`` for the listed types; for an object of any
    other type ``other`` (a catch-all member), else None (the union's own error)."""

    def tag(value: Any) -> str | None:
        is_object = isinstance(value, dict)
        kind = value.get("type") if is_object else getattr(value, "type", None)
        # Membership by equality: `kind` may be any JSON value, lists included.
        if isinstance(kind, str) and kind in types:
            return f"~{kind}"
        return other if is_object else None

    return tag


def parse_body(
    body: bytes,
    model: type[Model],
    *,
    bad_json: str,
    not_object: str,
    param: str | None = None,
    bounds: RequestBounds = DEFAULT_BOUNDS,
    messages_key: str = "messages",
    defaults: dict[str, Any] | None = None,
) -> Model:
    """A validated request model from raw body bytes (mirrors ``model_validate_json``).

    orjson parses strict JSON: no NaN/Infinity, no number that overflows a double, no lone
    surrogate, at most 1024 levels; so every value can go into protobuf and back out as JSON.
    ``bad_json`` may name the parser's complaint as ``{error}``. Before the model walks the
    data, its counts of messages (under ``messages_key``), content parts and tools are held to
    ``bounds``: those are what make validating and converting a body expensive. ``defaults``
    fill top-level fields the body leaves out.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(bad_json.format(error=exc), param=param) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(not_object, param=param)
    check_counts(data, bounds, messages_key)
    if defaults:
        for key, value in defaults.items():
            data.setdefault(key, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def check_counts(data: dict[str, Any], bounds: RequestBounds, messages_key: str) -> None:
    """``bounds`` over a decoded body: its message list, their content lists, its tools."""
    messages = data.get(messages_key)
    count = parts = 0
    if isinstance(messages, list):
        count = len(messages)
        if count > bounds.messages:
            bounds.check(count, 0, 0)
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                parts += len(content)
    tools = data.get("tools")
    bounds.check(count, parts, len(tools) if isinstance(tools, list) else 0)


def invalid_request(exc: ValidationError) -> InvalidRequestError:
    """A pydantic ValidationError as one 400 with a BadRequest violation per field."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    violations = [
        FieldViolation(field_path(err["loc"]), _describe(err)) for err in errors[:_MAX_VIOLATIONS]
    ]
    head = violations[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidRequestError(
        f"Invalid request: '{head.field}': {head.description}{more}",
        param=head.field,
        field_violations=violations,
    )


def _describe(err: Any) -> str:
    if err["type"] == "missing":
        return "this field is required"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    msg: str = err["msg"]
    return msg[:1].lower() + msg[1:]


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the caller's field path: ``messages[0].content``."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.startswith("~"):
            continue
        elif out:
            out.append(f".{part}")
        else:
            out.append(part)
    return "".join(out)


def field_error(param: str, description: str) -> InvalidRequestError:
    """A 400 for one field, worded like ``invalid_request`` (rules checked during conversion)."""
    return InvalidRequestError(
        f"Invalid request: '{param}': {description}",
        param=param,
        field_violations=[FieldViolation(param, description)],
    )


# --- JSON values the contract holds as google.protobuf.Struct --------------------------------


def schema_struct(schema: dict[str, Any], param: str) -> struct_pb2.Struct:
    """A JSON schema (or other JSON object) as a read-only ``Struct``; callers ``CopyFrom`` it."""
    try:
        key = orjson.dumps(schema)
    except orjson.JSONEncodeError:  # deeper than orjson writes
        raise field_error(param, TOO_DEEP) from None
    struct = _cached_struct(key)
    if struct is None:
        raise field_error(param, TOO_DEEP)
    return struct


@functools.lru_cache(maxsize=256)
def _cached_struct(schema_json: bytes) -> struct_pb2.Struct | None:
    # Agents send the same tool schemas with every request, and Struct.update is pure Python
    # (~15 µs for a small schema); a copy of a cached Struct is done in C. The depth check runs
    # once per distinct schema too.
    value = orjson.loads(schema_json)
    if too_deep(value):
        return None
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def fill_passthrough(passthrough: struct_pb2.Struct, fields: dict[str, Any]) -> None:
    """Copies unmodelled request fields into ``ChatRequest.passthrough``, refusing (by name)
    any value nested deeper than ``MAX_JSON_DEPTH``."""
    for key, value in fields.items():
        if too_deep(value):
            raise field_error(key, TOO_DEEP)
        passthrough[key] = value
