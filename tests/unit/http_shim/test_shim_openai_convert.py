"""OpenAI request JSON → ChatRequest, validation errors, ChatResponse → chat.completion."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError
from server.http_shim.openai_convert import completion_json, to_chat_request
from server.http_shim.openai_schema import parse_chat_request


def convert(body: dict[str, Any]) -> chat_pb2.ChatRequest:
    return to_chat_request(parse_chat_request(orjson.dumps(body)))


def invalid(body: bytes | dict[str, Any]) -> InvalidRequestError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidRequestError) as info:
        to_chat_request(parse_chat_request(raw))
    assert info.value.http_status == 400
    return info.value


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "p/m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_full_conversation_maps_every_message_kind() -> None:
    request = convert(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                {
                    "role": "user",
                    "name": "ann",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                        }
                    ],
                    # Echoed by SDKs from a previous response; not part of the contract.
                    "annotations": [],
                    "audio": None,
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ],
        }
    )
    system, developer, user, assistant, tool = request.messages
    assert system.role == types_pb2.ROLE_SYSTEM and system.content[0].text == "be brief"
    assert developer.role == types_pb2.ROLE_DEVELOPER and developer.content[0].text == "dev"
    assert user.name == "ann"
    assert user.content[0].text == "what is this?"
    image = user.content[1].image
    assert image.url == "data:image/png;base64,AAAA"
    assert image.detail == types_pb2.IMAGE_DETAIL_LOW
    assert assistant.role == types_pb2.ROLE_ASSISTANT
    assert [p.WhichOneof("part") for p in assistant.content] == ["tool_call"]
    call = assistant.content[0].tool_call
    assert (call.id, call.name, call.arguments) == ("call_1", "lookup", '{"q": "x"}')
    assert tool.role == types_pb2.ROLE_TOOL
    result = tool.content[0].tool_result
    # The tool name is filled from the matching call (Gemini needs it).
    assert (result.tool_call_id, result.content, result.name) == ("call_1", "42", "lookup")
    assert not request.HasField("passthrough")


def test_parameters_tools_and_formats() -> None:
    request = convert(
        base(
            temperature=0,
            top_p=0.5,
            max_tokens=10,
            max_completion_tokens=20,
            stop="END",
            seed=7,
            presence_penalty=-1,
            frequency_penalty=1.5,
            n=1,
            user="u-1",
            parallel_tool_calls=False,
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                        "strict": True,
                    },
                }
            ],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
            },
        )
    )
    assert request.HasField("temperature") and request.temperature == 0.0
    assert request.top_p == 0.5
    # max_completion_tokens is the current name and wins over the deprecated max_tokens.
    assert request.max_tokens == 20
    assert list(request.stop) == ["END"]
    assert request.seed == 7
    assert request.presence_penalty == -1.0 and request.frequency_penalty == 1.5
    assert request.n == 1 and request.user == "u-1"
    assert request.HasField("parallel_tool_calls") and request.parallel_tool_calls is False
    tool = request.tools[0]
    assert (tool.name, tool.description, tool.strict) == ("get_weather", "weather", True)
    assert json_format.MessageToDict(tool.parameters) == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert request.tool_choice.function_name == "get_weather"
    rf = request.response_format
    assert rf.type == types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    assert rf.json_schema.name == "w" and rf.json_schema.strict is True
    assert json_format.MessageToDict(rf.json_schema.schema) == {"type": "object"}


def test_unset_and_null_fields_stay_unset() -> None:
    request = convert(base(temperature=None, max_tokens=None, stop=None, tool_choice=None))
    for name in ("temperature", "top_p", "max_tokens", "seed", "n", "parallel_tool_calls"):
        assert not request.HasField(name), name
    assert not request.stop and not request.tools
    assert request.tool_choice.WhichOneof("choice") is None
    assert request.response_format.type == types_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED


@pytest.mark.parametrize(
    ("choice", "mode"),
    [
        ("auto", types_pb2.TOOL_CHOICE_MODE_AUTO),
        ("none", types_pb2.TOOL_CHOICE_MODE_NONE),
        ("required", types_pb2.TOOL_CHOICE_MODE_REQUIRED),
    ],
)
def test_tool_choice_modes(choice: str, mode: int) -> None:
    assert convert(base(tool_choice=choice)).tool_choice.mode == mode


def test_json_mode_and_stop_list() -> None:
    request = convert(base(response_format={"type": "json_object"}, stop=["a", "b"]))
    assert request.response_format.type == types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    assert list(request.stop) == ["a", "b"]


def test_unknown_fields_go_to_passthrough_and_stream_fields_do_not() -> None:
    request = convert(
        base(
            stream=True,
            stream_options={"include_usage": True},
            reasoning_effort="low",
            logit_bias={"50256": -100},
            metadata={"tags": ["a", "b"], "nested": {"on": True, "none": None}},
        )
    )
    assert json_format.MessageToDict(request.passthrough) == {
        "reasoning_effort": "low",
        "logit_bias": {"50256": -100.0},
        "metadata": {"tags": ["a", "b"], "nested": {"on": True, "none": None}},
    }


def test_assistant_text_refusal_parts() -> None:
    request = convert(
        {
            "model": "p/m",
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "refusal", "refusal": "no"},
                    ],
                },
                {"role": "tool", "tool_call_id": "x", "content": [{"type": "text", "text": "r"}]},
            ],
        }
    )
    assistant, tool = request.messages
    assert assistant.content[0].text == "a" and assistant.refusal == "no"
    # A result for an unknown call keeps an empty name rather than guessing.
    assert tool.content[0].tool_result.content == "r" and tool.content[0].tool_result.name == ""


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (base(temperature="0.5"), "temperature"),
        (base(max_tokens=2**31), "max_tokens"),
        (base(max_tokens=1.5), "max_tokens"),
        (base(stream="yes"), "stream"),
        (base(stop=3), "stop"),
        (base(stop=["a", 2]), "stop[1]"),
        (base(tool_choice="always"), "tool_choice"),
        (base(tool_choice={"type": "function"}), "tool_choice.function"),
        (base(response_format={"type": "xml"}), "response_format"),
        (base(response_format={"type": "json_schema"}), "response_format.json_schema"),
        (base(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
        (base(tools=[{"type": "custom", "custom": {}}]), "tools[0].type"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "p/m"}, "messages"),
        ({"model": "p/m", "messages": "hi"}, "messages"),
        ({"model": "p/m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "p/m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "p/m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": "p/m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {
                "model": "p/m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "model": "p/m",
                "messages": [{"role": "user", "content": [{"type": "input_audio"}]}],
            },
            "messages[0].content[0]",
        ),
        (
            {
                "model": "p/m",
                "messages": [
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x"}}],
                    }
                ],
            },
            "messages[0].content[0].type",
        ),
        (
            {"model": "p/m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        (
            {
                "model": "p/m",
                "messages": [
                    {
                        "role": "user",
                        "content": "x",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
                    }
                ],
            },
            "messages[0].tool_calls",
        ),
    ],
)
def test_schema_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    error = invalid(body)
    assert error.param == param
    assert param in error.message
    assert error.field_violations and error.field_violations[0].field == param


@pytest.mark.parametrize("raw", [b"", b"{", b'{"model": "p/m",}', b"\xff\xfe", b'"\\ud800"'])
def test_malformed_json_is_a_400_without_param(raw: bytes) -> None:
    error = invalid(raw)
    assert error.param is None
    assert "could not parse the JSON body" in error.message


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null"])
def test_non_object_body_is_a_400(raw: bytes) -> None:
    assert invalid(raw).message == "The request body must be a JSON object."


def _response(*parts: types_pb2.ContentPart, **fields: Any) -> chat_pb2.ChatResponse:
    return chat_pb2.ChatResponse(
        id="req123",
        model="route-a",
        created=1_700_000_000,
        message=types_pb2.Message(role=types_pb2.ROLE_ASSISTANT, content=list(parts)),
        usage=types_pb2.Usage(
            input_tokens=10, output_tokens=4, cached_input_tokens=6, reasoning_tokens=1
        ),
        cost=types_pb2.Cost(total_usd=0.25),
        **fields,
    )


def test_completion_json_text() -> None:
    out = completion_json(
        _response(
            types_pb2.ContentPart(text="Hel"),
            types_pb2.ContentPart(text="lo"),
            finish_reason=types_pb2.FINISH_REASON_LENGTH,
        )
    )
    assert out == {
        "id": "chatcmpl-req123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "route-a",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 1},
            "cost_usd": 0.25,
        },
        "system_fingerprint": None,
    }


def test_completion_json_tool_calls_have_null_content() -> None:
    out = completion_json(
        _response(
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(text="thinking")),
            types_pb2.ContentPart(
                tool_call=types_pb2.ToolCall(id="c1", name="f", arguments='{"a":1}')
            ),
            types_pb2.ContentPart(tool_call=types_pb2.ToolCall(id="c2", name="g", arguments="")),
            finish_reason=types_pb2.FINISH_REASON_TOOL_CALLS,
        )
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "thinking",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
        ],
    }


def test_completion_json_empty_answer_and_refusal() -> None:
    empty = completion_json(_response())["choices"][0]
    assert empty["message"]["content"] == "" and empty["finish_reason"] == "stop"
    refused = _response()
    refused.message.refusal = "I can't"
    message = completion_json(refused)["choices"][0]["message"]
    assert message["content"] is None and message["refusal"] == "I can't"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (', "x": 1e400', None),
        (', "x": NaN', None),
        (', "x": Infinity', None),
        (', "x": ' + "9" * 500, None),
        (', "x": ' + _deep(600), "x"),
        (
            ', "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": '
            + _deep(300)
            + "}}}]",
            "tools[0].function.parameters",
        ),
        (
            ', "response_format": {"type": "json_schema", "json_schema": {"name": "n", '
            '"schema": {"a": ' + _deep(600) + "}}}",
            "response_format.json_schema.schema",
        ),
    ],
)
# NaN and Infinity are not JSON, and 1e400 or a 500-digit integer cannot be a double: all are
# refused at parsing. JSON nested deeper than protobuf's Struct conversion recurses is refused
# naming the field.
def test_values_protobuf_cannot_hold_are_a_400_not_a_crash(extra: str, param: str | None) -> None:
    raw = '{"model": "p/m", "messages": [{"role": "user", "content": "x"}]' + extra + "}"
    assert invalid(raw.encode()).param == param


def test_large_integers_survive_as_numbers() -> None:
    request = convert(
        base(
            x_big=2**64 - 1,
            tools=[
                {"type": "function", "function": {"name": "f", "parameters": {"maximum": 2**63}}}
            ],
        )
    )
    assert request.passthrough["x_big"] == float(2**64 - 1)
    assert request.tools[0].parameters["maximum"] == float(2**63)
