"""The OpenAI Chat Completions request as it arrives on the wire, validated with pydantic.

Mirrors ``CreateChatCompletionRequest`` of openai-openapi, but only the fields the
``switchboard.v1`` contract models (plus ``stream``/``stream_options``, which the shim consumes):
every other top-level field is kept as-is in ``model_extra`` and becomes
``ChatRequest.passthrough``. These classes describe the wire shape only; they are converted to
the contract at once (``openai_convert``) and never travel further.

Union members carry ``~``-prefixed tags so that an error location reads like the caller's field
path once the tags are dropped (``messages[0].content[1].image_url.url``); the base model, the
tags and the error conversion are shared with the other dialects (``schema``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.http_shim.schema import (
    REQUEST_CONFIG,
    Int32,
    Int64,
    Wire,
    kind_tag,
    parse_body,
    type_tag,
)


class TextPart(Wire):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class ImageUrl(Wire):
    """``image_url`` of an image part: an http(s) or data: URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Wire):
    """``{"type": "image_url", "image_url": {...}}``."""

    type: Literal["image_url"]
    image_url: ImageUrl


class RefusalPart(Wire):
    """``{"type": "refusal", "refusal": ...}`` (assistant messages)."""

    type: Literal["refusal"]
    refusal: str


_PART_TYPES = ("text", "image_url", "refusal")
Part = Annotated[
    Annotated[TextPart, Tag("~text")]
    | Annotated[ImagePart, Tag("~image_url")]
    | Annotated[RefusalPart, Tag("~refusal")],
    Discriminator(
        type_tag(*_PART_TYPES),
        custom_error_type="unsupported_part",
        custom_error_message="content part type must be one of 'text', 'image_url', 'refusal'",
    ),
]
Content = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[Part], Tag("~list")],
    Discriminator(
        kind_tag,
        custom_error_type="content_type",
        custom_error_message="content must be a string or an array of content parts",
    ),
]
Stop = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[str], Tag("~list")],
    Discriminator(
        kind_tag,
        custom_error_type="stop_type",
        custom_error_message="stop must be a string or an array of strings",
    ),
]


class FunctionCall(Wire):
    """``function`` of an assistant tool call: name and JSON argument text."""

    name: str
    arguments: str = ""


class ToolCall(Wire):
    """An assistant message's ``tool_calls[i]``."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Wire):
    """One message of any role; role-specific rules are checked during conversion."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class FunctionDef(Wire):
    """``tools[i].function``."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(Wire):
    """``tools[i]``: only function tools exist in the contract."""

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Wire):
    """``tool_choice.function``."""

    name: str


class NamedToolChoice(Wire):
    """``{"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("~str")]
    | Annotated[NamedToolChoice, Tag("~object")],
    Discriminator(
        kind_tag,
        custom_error_type="tool_choice_type",
        custom_error_message=(
            "tool_choice must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}'
        ),
    ),
]


class JsonSchemaSpec(Wire):
    """``response_format.json_schema``."""

    name: str
    description: str | None = None
    # `schema` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(Wire):
    """``{"type": "text"}``."""

    type: Literal["text"]


class JsonObjectFormat(Wire):
    """``{"type": "json_object"}`` (JSON mode)."""

    type: Literal["json_object"]


class JsonSchemaFormat(Wire):
    """``{"type": "json_schema", "json_schema": {...}}`` (structured output)."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    Annotated[TextFormat, Tag("~text")]
    | Annotated[JsonObjectFormat, Tag("~json_object")]
    | Annotated[JsonSchemaFormat, Tag("~json_schema")],
    Discriminator(
        type_tag("text", "json_object", "json_schema"),
        custom_error_type="response_format_type",
        custom_error_message="response_format.type must be 'text', 'json_object' or 'json_schema'",
    ),
]


class StreamOptions(Wire):
    """``stream_options``; only ``include_usage`` changes what the shim sends."""

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``; unknown fields land in ``model_extra``."""

    model_config = REQUEST_CONFIG

    model: str
    messages: list[Message]
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: Int32 | None = None
    max_completion_tokens: Int32 | None = None
    stop: Stop | None = None
    seed: Int64 | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: Int32 | None = None
    user: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None


# What OpenAI-style dialects say about a body that is not JSON, or not an object.
BAD_JSON = (
    "We could not parse the JSON body of your request: {error}. "
    "The API expects a JSON object (Content-Type: application/json)."
)
NOT_OBJECT = "The request body must be a JSON object."


def parse_chat_request(
    body: bytes, bounds: RequestBounds = DEFAULT_BOUNDS
) -> ChatCompletionRequest:
    """Parses and validates a request body; InvalidRequestError (400) naming the field."""
    return parse_body(
        body,
        ChatCompletionRequest,
        bounds=bounds,
        bad_json=BAD_JSON,
        not_object=NOT_OBJECT,
    )
