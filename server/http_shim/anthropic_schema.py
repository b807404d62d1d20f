"""The Anthropic Messages API request as it arrives on the wire, validated with pydantic.

Mirrors ``MessageCreateParams`` of anthropic-python (docs.claude.com/en/api/messages), but only
the fields the ``switchboard.v1`` contract models (plus ``stream``): every other top-level field
(``top_k``, ``thinking``, ``service_tier``, a top-level ``cache_control``...) is kept as-is in
``model_extra`` and becomes ``ChatRequest.passthrough``. These classes describe the wire shape
only; ``anthropic_convert`` turns them into the contract at once and they never travel further.

What the gateway cannot carry still validates, as a catch-all union member (``OtherBlock``,
``OtherSource``, ``ServerTool``), so that conversion refuses it with UnsupportedFeatureError
naming its type: a feature the gateway lacks, not a malformed body. ``cache_control`` on blocks
and tools is accepted and ignored (an unknown nested field): the contract has no per-block cache
hint, and it never changes what a model answers. Tags and errors work as in ``openai_schema``
(``schema`` holds what the dialects share).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PlainValidator, Tag
from pydantic_core import PydanticCustomError

from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.http_shim.schema import REQUEST_CONFIG, Wire, kind_tag, parse_body, type_tag

NonEmptyStr = Annotated[str, Field(min_length=1)]


def _base64(data: object) -> bytes:
    # A plain validator sees the raw input, so it checks the type strict mode would have.
    if not isinstance(data, str):
        raise PydanticCustomError("string_type", "Input should be a valid string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64", "Input should be valid base64") from None


class TextBlock(Wire):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class Base64Source(Wire):
    """An image's ``{"type": "base64", "media_type", "data"}`` source; ``data`` is decoded."""

    type: Literal["base64"]
    media_type: NonEmptyStr
    data: Annotated[bytes, PlainValidator(_base64)]


class UrlSource(Wire):
    """An image's ``{"type": "url", "url"}`` source."""

    type: Literal["url"]
    url: NonEmptyStr


class OtherSource(Wire):
    """An image source the contract cannot carry (``file``); refused during conversion."""

    type: Any = None


ImageSource = Annotated[
    Annotated[Base64Source, Tag("~base64")]
    | Annotated[UrlSource, Tag("~url")]
    | Annotated[OtherSource, Tag("~other")],
    Discriminator(
        type_tag("base64", "url", other="~other"),
        custom_error_type="image_source_type",
        custom_error_message="an image source must be an object",
    ),
]


class ImageBlock(Wire):
    """``{"type": "image", "source": {...}}``."""

    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(Wire):
    """An assistant's ``{"type": "tool_use", "id", "name", "input"}``."""

    type: Literal["tool_use"]
    id: NonEmptyStr
    name: NonEmptyStr
    input: dict[str, Any] = Field(default_factory=dict)


class OtherBlock(Wire):
    """A content block the contract cannot carry (``document``, ``search_result``,
    ``server_tool_use``...); refused during conversion."""

    type: str


_CONTENT_ERROR = {
    "custom_error_type": "content_block",
    "custom_error_message": "a content block must be an object",
}
ToolResultPart = Annotated[
    Annotated[TextBlock, Tag("~text")] | Annotated[OtherBlock, Tag("~other")],
    Discriminator(type_tag("text", other="~other"), **_CONTENT_ERROR),
]


class ToolResultBlock(Wire):
    """A user's ``{"type": "tool_result", "tool_use_id", "content", "is_error"}``."""

    type: Literal["tool_result"]
    tool_use_id: NonEmptyStr
    content: (
        Annotated[
            Annotated[str, Tag("~str")] | Annotated[list[ToolResultPart], Tag("~list")],
            Discriminator(
                kind_tag,
                custom_error_type="content_type",
                custom_error_message="content must be a string or an array of text blocks",
            ),
        ]
        | None
    ) = None
    is_error: bool | None = None


class ThinkingBlock(Wire):
    """An assistant's ``{"type": "thinking", "thinking", "signature"}``."""

    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(Wire):
    """An assistant's ``{"type": "redacted_thinking", "data"}``."""

    type: Literal["redacted_thinking"]
    data: str


_BLOCK_TYPES = ("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking")
Block = Annotated[
    Annotated[TextBlock, Tag("~text")]
    | Annotated[ImageBlock, Tag("~image")]
    | Annotated[ToolUseBlock, Tag("~tool_use")]
    | Annotated[ToolResultBlock, Tag("~tool_result")]
    | Annotated[ThinkingBlock, Tag("~thinking")]
    | Annotated[RedactedThinkingBlock, Tag("~redacted_thinking")]
    | Annotated[OtherBlock, Tag("~other")],
    Discriminator(type_tag(*_BLOCK_TYPES, other="~other"), **_CONTENT_ERROR),
]
Content = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[Block], Tag("~list")],
    Discriminator(
        kind_tag,
        custom_error_type="content_type",
        custom_error_message="content must be a string or an array of content blocks",
    ),
]


class Message(Wire):
    """One turn; which blocks a role may hold is checked during conversion."""

    role: Literal["user", "assistant"]
    content: Content


SystemBlock = Annotated[
    Annotated[TextBlock, Tag("~text")],
    Discriminator(
        type_tag("text"),
        custom_error_type="system_block",
        custom_error_message="system blocks must be text blocks",
    ),
]
System = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[SystemBlock], Tag("~list")],
    Discriminator(
        kind_tag,
        custom_error_type="system_type",
        custom_error_message="system must be a string or an array of text blocks",
    ),
]


class ClientTool(Wire):
    """``tools[i]`` the client runs: name, description and ``input_schema``."""

    type: Literal["custom"] | None = None
    name: NonEmptyStr
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool | None = None


class ServerTool(Wire):
    """A server tool (``web_search_20250305``, ``bash_20250124``...); refused during conversion."""

    type: Any


def _tool_tag(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    return "~client" if kind is None or kind == "custom" else "~server"


Tool = Annotated[
    Annotated[ClientTool, Tag("~client")] | Annotated[ServerTool, Tag("~server")],
    Discriminator(
        _tool_tag, custom_error_type="tool_type", custom_error_message="a tool must be an object"
    ),
]


class ToolChoice(Wire):
    """``tool_choice``; ``name`` is required for ``tool`` (checked during conversion) and
    ignored for the other types."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(Wire):
    """``metadata``: Anthropic's has only ``user_id`` and refuses anything else."""

    # Merged with Wire's config: strict, and unknown keys are an error here.
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None


class JsonSchemaFormat(Wire):
    """``output_config.format`` of type ``json_schema`` (structured output)."""

    type: Literal["json_schema"]
    # `schema` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] = Field(alias="schema")


def _format_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else None
    return "~json_schema" if kind == "json_schema" else "~other"


def _object_tag(value: Any) -> str:
    return "~object" if isinstance(value, dict) else "~other"


class OutputConfig(BaseModel):
    """``output_config``: a ``json_schema`` format maps to the contract; its other fields
    (``effort``...) and any other format travel in passthrough."""

    model_config = REQUEST_CONFIG

    format: Annotated[
        Annotated[JsonSchemaFormat, Tag("~json_schema")] | Annotated[Any, Tag("~other")],
        Discriminator(_format_tag),
    ] = None


class MessagesRequest(BaseModel):
    """The body of ``POST /v1/messages``; unknown fields land in ``model_extra``."""

    model_config = REQUEST_CONFIG

    model: NonEmptyStr
    # Required, as Anthropic requires it.
    max_tokens: Annotated[int, Field(ge=1)]
    messages: list[Message]
    system: System | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    metadata: Metadata | None = None
    stream: bool | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    # Not an object: passed through unchanged, for the upstream to judge (as before this
    # gateway modelled it).
    output_config: Annotated[
        Annotated[OutputConfig, Tag("~object")] | Annotated[Any, Tag("~other")],
        Discriminator(_object_tag),
    ] = None


def parse_messages_request(
    body: bytes, bounds: RequestBounds = DEFAULT_BOUNDS, defaults: dict[str, Any] | None = None
) -> MessagesRequest:
    """Parses and validates a request body; InvalidRequestError (400) naming the field.
    ``defaults`` fill top-level fields the body leaves out (count_tokens has no max_tokens)."""
    return parse_body(
        body,
        MessagesRequest,
        bounds=bounds,
        defaults=defaults,
        bad_json="The request body is not valid JSON.",
        not_object="The request body must be a JSON object.",
        param="body",
    )
