"""Contract ↔ JSON helpers more than one adapter's encoder or decoder needs.

Protobuf ``Struct`` values as plain JSON, a bound on JSON nesting, system messages as the texts
of a separate system prompt, tool-call arguments as a JSON object, image parts as base64 or a
URL, and ids for tool calls an upstream sent without one. Vendor wire shapes stay in each
vendor's package (``<vendor>/codec.py`` holds what its adapter and its dialect share); only
these wire-neutral conversions live here.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from switchboard.v1 import types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError

Json = dict[str, Any]

# JSON that becomes a Struct or part of an upstream body nests at most this deep. Struct
# conversion recurses in Python (about three frames a level) and orjson writes at most 254
# levels, so deeper values would fail far from the caller's field; real JSON schemas and tool
# inputs nest a few levels.
MAX_JSON_DEPTH = 64


def struct_to_dict(struct: struct_pb2.Struct) -> Json:
    """A ``google.protobuf.Struct`` as plain JSON values (``json_format.MessageToDict``).

    Struct stores every number as a double; integral values go back out as ints because strict
    upstreams reject ``"maxItems": 5.0`` or ``"top_logprobs": 3.0`` where the schema wants an
    integer.
    """
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    return None


def too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` in a JSON value (the check
    ``orjson.dumps`` makes at 254), without recursion so that any input can be measured."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def copy_set_fields(message: Message, out: Json, names: Mapping[str, str]) -> None:
    """Copies each optional scalar of ``message`` that is set into ``out`` under its wire name
    (``names``: contract field → wire key); unset fields are left out, never sent as 0."""
    for field, wire in names.items():
        if message.HasField(field):
            out[wire] = getattr(message, field)


def system_texts(message: types_pb2.Message, i: int, vendor: str, noun: str) -> list[str] | None:
    """For APIs with a separate system prompt and no participant names (Anthropic, Gemini): the
    non-empty texts of a system or developer message, None for any other role. Refuses a
    ``name`` and system content other than text (``{vendor} {noun} can only hold text``)."""
    if message.name:
        raise UnsupportedFeatureError(
            f"{vendor} does not support participant names on messages.",
            param=f"messages[{i}].name",
        )
    if message.role not in (types_pb2.ROLE_SYSTEM, types_pb2.ROLE_DEVELOPER):
        return None
    texts = []
    for j, part in enumerate(message.content):
        if part.WhichOneof("part") != "text":
            raise UnsupportedFeatureError(
                f"{vendor} {noun} can only hold text.", param=f"messages[{i}].content[{j}]"
            )
        if part.text:
            texts.append(part.text)
    return texts


def arguments_object(arguments: str) -> Json | None:
    """A tool call's JSON-text arguments as an object (``{}`` for empty text); None when the
    text is not a JSON object of bounded depth (models emit invalid JSON)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or too_deep(value):
        return None
    return value


def tool_arguments(arguments: str, param: str, vendor: str) -> Json:
    """A tool call's JSON-text arguments as the object APIs that take them parsed want
    (Anthropic ``input``, Gemini ``args``); empty text is ``{}``."""
    value = arguments_object(arguments)
    if value is None:
        raise InvalidRequestError(
            f"tool call arguments must be a JSON object (nested at most {MAX_JSON_DEPTH} "
            f"levels) to send them to {vendor}",
            param=param,
        )
    return value


class ImageSource(NamedTuple):
    """Where an image part's pixels come from: inline base64 ``data`` or an http(s) ``url``."""

    media_type: str
    data: str = ""
    url: str = ""


def image_source(image: types_pb2.ImagePart, param: str) -> ImageSource:
    """Bytes and ``data:`` URLs as (media type, base64 data); http(s) URLs as they are, with the
    media type only when the caller gave one. Anything else is an ``InvalidRequestError``."""
    if image.WhichOneof("source") == "data":
        if not image.media_type:
            raise InvalidRequestError("an image given as bytes needs a media_type", param=param)
        return ImageSource(image.media_type, base64.b64encode(image.data).decode("ascii"))
    url = image.url
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise InvalidRequestError(
                "image data URLs must look like data:<media type>;base64,<data>", param=param
            )
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(
                "the image data URL is not valid base64", param=param
            ) from None
        return ImageSource(media_type, payload)
    if url.startswith(("https://", "http://")):
        return ImageSource(image.media_type, url=url)
    raise InvalidRequestError("an image needs an http(s) URL, a data: URL or bytes", param=param)


def new_call_id() -> str:
    """A tool-call id for upstreams that send none (clients need one to answer the call)."""
    return "call_" + os.urandom(12).hex()
