"""The OpenAI Responses API request (``POST /v1/responses``) as it arrives, validated with pydantic.

Mirrors ``CreateResponse`` of openai-openapi for what the contract models: ``input`` as a string
or a list of items (``message`` with ``input_text`` / ``input_image`` / ``output_text`` /
``refusal`` parts, ``function_call``, ``function_call_output``, ``reasoning``), ``instructions``,
function ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``text.format``,
``max_output_tokens``, ``temperature``, ``top_p``, ``reasoning.effort``, ``metadata``, ``user``,
``store``, ``previous_response_id``, ``stream``, ``include``, ``truncation``. Items and tools of
other types (built-in tools such as ``web_search`` or ``file_search``, ``input_file`` parts,
``item_reference``...) are caught by catch-all members and refused during conversion with
``UNSUPPORTED_FEATURE`` naming the field; every other top-level field is kept in
``model_extra`` and becomes ``ChatRequest.passthrough``. Items the API itself sends back in
``output`` (with ``id``, ``status``, ``annotations``, ``logprobs``) validate as input, so a client
can replay a response's output in its next request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from server.core.validate import DEFAULT_BOUNDS, RequestBounds
from server.http_shim import openai_schema
from server.http_shim.openai_schema import BAD_JSON, NOT_OBJECT
from server.http_shim.schema import REQUEST_CONFIG, Int32, Wire, kind_tag, parse_body, type_tag


class Other(Wire):
    """Any object of a type the gateway does not serve; refused by name during conversion."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    type: Any = None


class InputText(Wire):
    """``{"type": "input_text", "text": ...}``."""

    type: Literal["input_text"]
    text: str


class OutputText(Wire):
    """``{"type": "output_text", "text": ...}`` (assistant history)."""

    type: Literal["output_text"]
    text: str


class Refusal(Wire):
    """``{"type": "refusal", "refusal": ...}`` (assistant history)."""

    type: Literal["refusal"]
    refusal: str


class InputImage(Wire):
    """``{"type": "input_image", "image_url": ..., "detail": ...}`` (an http(s) or data: URL)."""

    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


_PART_TYPES = ("input_text", "output_text", "refusal", "input_image")
Part = Annotated[
    Annotated[InputText, Tag("~input_text")]
    | Annotated[OutputText, Tag("~output_text")]
    | Annotated[Refusal, Tag("~refusal")]
    | Annotated[InputImage, Tag("~input_image")]
    | Annotated[Other, Tag("~other")],
    Discriminator(
        type_tag(*_PART_TYPES, other="~other"),
        custom_error_type="content_part",
        custom_error_message="a content part must be an object with a type",
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


class MessageItem(Wire):
    """A ``message`` item (``type`` may be left out, as in EasyInputMessage)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Content
    id: str | None = None
    status: str | None = None


class FunctionCallItem(Wire):
    """A ``function_call`` the model made (replayed as history)."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(Wire):
    """A ``function_call_output``: the result of a call, by ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str
    output: Annotated[
        Annotated[str, Tag("~str")] | Annotated[list[Part], Tag("~list")],
        Discriminator(
            kind_tag,
            custom_error_type="output_type",
            custom_error_message="output must be a string or an array of content parts",
        ),
    ]
    id: str | None = None
    status: str | None = None


class SummaryText(Wire):
    """``{"type": "summary_text", "text": ...}`` of a reasoning item."""

    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningItem(Wire):
    """A ``reasoning`` item (its summary and, opaque, its encrypted content)."""

    type: Literal["reasoning"]
    summary: list[SummaryText] = Field(default_factory=list)
    encrypted_content: str | None = None
    id: str | None = None
    status: str | None = None


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict) and "type" not in value and "role" in value:
        return "~message"
    return type_tag(
        "message", "function_call", "function_call_output", "reasoning", other="~other"
    )(value)


Item = Annotated[
    Annotated[MessageItem, Tag("~message")]
    | Annotated[FunctionCallItem, Tag("~function_call")]
    | Annotated[FunctionCallOutputItem, Tag("~function_call_output")]
    | Annotated[ReasoningItem, Tag("~reasoning")]
    | Annotated[Other, Tag("~other")],
    Discriminator(
        _item_tag,
        custom_error_type="input_item",
        custom_error_message="an input item must be an object with a type (or a role)",
    ),
]
Input = Annotated[
    Annotated[str, Tag("~str")] | Annotated[list[Item], Tag("~list")],
    Discriminator(
        kind_tag,
        custom_error_type="input_type",
        custom_error_message="input must be a string or an array of input items",
    ),
]


class FunctionTool(Wire):
    """``{"type": "function", "name", "description", "parameters", "strict"}`` (flat)."""

    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


Tool = Annotated[
    Annotated[FunctionTool, Tag("~function")] | Annotated[Other, Tag("~other")],
    Discriminator(
        type_tag("function", other="~other"),
        custom_error_type="tool",
        custom_error_message="a tool must be an object with a type",
    ),
]


class NamedFunction(Wire):
    """``{"type": "function", "name": ...}``."""

    type: Literal["function"]
    name: str


def _choice_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "~str"
    if isinstance(value, dict):
        return "~function" if value.get("type") == "function" else "~other"
    return None


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("~str")]
    | Annotated[NamedFunction, Tag("~function")]
    | Annotated[Other, Tag("~other")],
    Discriminator(
        _choice_tag,
        custom_error_type="tool_choice_type",
        custom_error_message=(
            "tool_choice must be 'none', 'auto', 'required' or "
            '{"type": "function", "name": ...}'
        ),
    ),
]


# `{"type": "text"}` and `{"type": "json_object"}` are Chat Completions' own; json_schema is flat.
TextFormatText = openai_schema.TextFormat
TextFormatJsonObject = openai_schema.JsonObjectFormat


class TextFormatJsonSchema(Wire):
    """``{"type": "json_schema", "name", "schema", "description", "strict"}`` (flat)."""

    type: Literal["json_schema"]
    name: str
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


TextFormat = Annotated[
    Annotated[TextFormatText, Tag("~text")]
    | Annotated[TextFormatJsonObject, Tag("~json_object")]
    | Annotated[TextFormatJsonSchema, Tag("~json_schema")],
    Discriminator(
        type_tag("text", "json_object", "json_schema"),
        custom_error_type="text_format_type",
        custom_error_message="text.format.type must be 'text', 'json_object' or 'json_schema'",
    ),
]


class TextOptions(Wire):
    """``text``: the output format (``verbosity`` is accepted for OpenAI upstreams only)."""

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningOptions(Wire):
    """``reasoning``: ``effort`` goes to providers that take it; summaries are always given
    when the provider produces reasoning text."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class CreateResponse(BaseModel):
    """The body of ``POST /v1/responses``; unknown fields land in ``model_extra``."""

    model_config = REQUEST_CONFIG

    model: str
    input: Input | None = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: Int32 | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: ReasoningOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    stream: bool | None = None
    include: list[str] | None = None
    truncation: Literal["disabled", "auto"] | None = None
    background: bool | None = None
    stream_options: dict[str, Any] | None = None


def parse_create_response(body: bytes, bounds: RequestBounds = DEFAULT_BOUNDS) -> CreateResponse:
    """Parses and validates a request body; InvalidRequestError (400) naming the field."""
    return parse_body(
        body,
        CreateResponse,
        bounds=bounds,
        messages_key="input",
        bad_json=BAD_JSON,
        not_object=NOT_OBJECT,
    )
