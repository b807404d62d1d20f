"""The OpenAI Chat Completions request as it arrives on the wire, validated with pydantic.

Mirrors ``CreateChatCompletionRequest`` of openai-openapi, but only the fields the
``switchboard.v1`` contract models (plus ``stream``/``stream_options``, which the shim consumes):
every other top-level field is kept as-is in ``model_extra`` and becomes
``ChatRequest.passthrough``. These classes describe the wire shape only; they are converted to
the contract at once (``openai_convert``) and never travel further.

Union members carry ``~``-prefixed tags so that an error location reads like the caller's field
path once the tags are dropped (``messages[0].content[1].image_url.url``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from server.core.errors import FieldViolation, InvalidRequestError

INT32 = 2**31 - 1
INT64 = 2**63 - 1
Int32 = Annotated[int, Field(ge=-INT32 - 1, le=INT32)]
Int64 = Annotated[int, Field(ge=-INT64 - 1, le=INT64)]


class _Wire(BaseModel):
    # Strict like OpenAI ("temperature": "0.5" is a 400); unknown nested fields (e.g. `audio`,
    # `annotations` echoed back from an SDK's message object) are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


def _kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "~str"
    if isinstance(value, list):
        return "~list"
    if isinstance(value, dict):
        return "~object"
    return None


def _by_type(*types: str) -> Any:
    def tag(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return f"~{kind}" if kind in types else None

    return tag


class TextPart(_Wire):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class ImageUrl(_Wire):
    """``image_url`` of an image part: an http(s) or data: URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Wire):
    """``{"type": "image_url", "image_url": {...}}``."""

    type: Literal["image_url"]
    image_url: ImageUrl


class RefusalPart(_Wire):
    """``{"type": "refusal", "refusal": ...}`` (assistant messages)."""

    type: Literal["refusal"]
    refusal: str


_PART_TYPES = ("text", "image_url", "refusal")
Part = Annotated[
    Annotated[TextPart, Tag("~text")]
    | Annotated[ImagePart, Tag("~image_url")]
    | Annotated[RefusalPart, Tag("~refusal")],
    Discriminator(
        _by_type(*_PART_TYPES),
        custom_error_type="unsupported_part",
        custom_error_message="content part type must be one of 'text', 'image_url', 'refusal'",
    ),
]
Content = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[Part], Tag("~list")],
    Discriminator(
        _kind,
        custom_error_type="content_type",
        custom_error_message="content must be a string or an array of content parts",
    ),
]
Stop = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[str], Tag("~list")],
    Discriminator(
        _kind,
        custom_error_type="stop_type",
        custom_error_message="stop must be a string or an array of strings",
    ),
]


class FunctionCall(_Wire):
    """``function`` of an assistant tool call: name and JSON argument text."""

    name: str
    arguments: str = ""


class ToolCall(_Wire):
    """An assistant message's ``tool_calls[i]``."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Wire):
    """One message of any role; role-specific rules are checked during conversion."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class FunctionDef(_Wire):
    """``tools[i].function``."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Wire):
    """``tools[i]``: only function tools exist in the contract."""

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Wire):
    """``tool_choice.function``."""

    name: str


class NamedToolChoice(_Wire):
    """``{"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("~str")]
    | Annotated[NamedToolChoice, Tag("~object")],
    Discriminator(
        _kind,
        custom_error_type="tool_choice_type",
        custom_error_message=(
            "tool_choice must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}'
        ),
    ),
]


class JsonSchemaSpec(_Wire):
    """``response_format.json_schema``."""

    name: str
    description: str | None = None
    # `schema` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Wire):
    """``{"type": "text"}``."""

    type: Literal["text"]


class JsonObjectFormat(_Wire):
    """``{"type": "json_object"}`` (JSON mode)."""

    type: Literal["json_object"]


class JsonSchemaFormat(_Wire):
    """``{"type": "json_schema", "json_schema": {...}}`` (structured output)."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    Annotated[TextFormat, Tag("~text")]
    | Annotated[JsonObjectFormat, Tag("~json_object")]
    | Annotated[JsonSchemaFormat, Tag("~json_schema")],
    Discriminator(
        _by_type("text", "json_object", "json_schema"),
        custom_error_type="response_format_type",
        custom_error_message="response_format.type must be 'text', 'json_object' or 'json_schema'",
    ),
]


class StreamOptions(_Wire):
    """``stream_options``; only ``include_usage`` changes what the shim sends."""

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``; unknown fields land in ``model_extra``."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

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


# At most this many field errors are listed in one 400.
_MAX_VIOLATIONS = 10


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Parses and validates a request body; InvalidRequestError (400) naming the field."""
    # orjson parses strict JSON: no NaN/Infinity, no number that overflows a double, no lone
    # surrogate; so every value can go into protobuf and back out as JSON. Same cost as
    # pydantic's own JSON parser.
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: {exc}. "
            "The API expects a JSON object (Content-Type: application/json)."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequestError:
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
