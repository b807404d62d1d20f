"""The offline demo provider (server.providers.demo): deterministic, documented behaviour."""

from __future__ import annotations

import json

import pytest
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UpstreamNotFoundError
from server.providers.base import Provider, UpstreamCall
from server.providers.demo import MODELS, DemoProvider

CALL = UpstreamCall(model="echo", api_key="")


def user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


def struct(value: dict) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


async def stream(
    provider: Provider, request: chat_pb2.ChatRequest
) -> list[chat_pb2.StreamChatResponse]:
    return [frame async for frame in provider.stream(request, CALL)]


def test_is_labelled_demo_and_satisfies_the_protocol() -> None:
    provider = DemoProvider()
    assert isinstance(provider, Provider)
    assert provider.kind == "demo" and provider.name == "demo"
    assert "demo" in MODELS["echo"].lower() and "not a real llm" in MODELS["echo"].lower()


async def test_echoes_the_last_user_message_word_by_word() -> None:
    request = chat_pb2.ChatRequest(
        messages=[
            types_pb2.Message(
                role=types_pb2.ROLE_SYSTEM, content=[types_pb2.ContentPart(text="ignored rules")]
            ),
            user("first"),
            user("Hello  gateway world"),
        ]
    )
    response = await DemoProvider().chat(request, CALL)
    assert response.message.content[0].text == "Echo: Hello  gateway world"
    assert response.finish_reason == types_pb2.FINISH_REASON_STOP
    assert response.usage == types_pb2.Usage(input_tokens=6, output_tokens=4)
    frames = await stream(DemoProvider(), request)
    texts = [f.text.text for f in frames if f.WhichOneof("frame") == "text"]
    assert texts == ["Echo:", " Hello", "  gateway", " world"]
    assert [f.WhichOneof("frame") for f in frames][-1] == "end"
    assert frames[-1].end.usage == response.usage


async def test_max_tokens_truncates_in_words() -> None:
    request = chat_pb2.ChatRequest(messages=[user("one two three four")], max_tokens=3)
    response = await DemoProvider().chat(request, CALL)
    assert response.message.content[0].text == "Echo: one two"
    assert response.finish_reason == types_pb2.FINISH_REASON_LENGTH
    assert response.usage.output_tokens == 3
    frames = await stream(DemoProvider(), request)
    assert frames[-1].end.finish_reason == types_pb2.FINISH_REASON_LENGTH


async def test_stop_sequences_cut_the_answer() -> None:
    request = chat_pb2.ChatRequest(messages=[user("alpha beta STOP gamma")], stop=["STOP", "zzz"])
    response = await DemoProvider().chat(request, CALL)
    assert response.message.content[0].text == "Echo: alpha beta "
    assert response.finish_reason == types_pb2.FINISH_REASON_STOP


async def test_json_mode_and_json_schema_answer_valid_json() -> None:
    json_mode = chat_pb2.ChatRequest(
        messages=[user("hi")],
        response_format=types_pb2.ResponseFormat(type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
    )
    response = await DemoProvider().chat(json_mode, CALL)
    assert json.loads(response.message.content[0].text) == {"echo": "Echo: hi"}
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "kind": {"enum": ["a", "b"]},
            "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
        "required": ["name"],
    }
    with_schema = chat_pb2.ChatRequest(
        messages=[user("hi")],
        response_format=types_pb2.ResponseFormat(
            type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            json_schema=types_pb2.JsonSchema(name="p", schema=struct(schema)),
        ),
    )
    value = json.loads((await DemoProvider().chat(with_schema, CALL)).message.content[0].text)
    assert value == {
        "name": "Echo: hi",
        "age": 18,
        "tags": ["Echo: hi"],
        "kind": "a",
        "nested": {"ok": True},
    }


WEATHER = types_pb2.Tool(
    name="get_weather",
    parameters=struct(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        }
    ),
)
CLOCK = types_pb2.Tool(name="get_time")


async def test_calls_the_first_tool_with_required_arguments() -> None:
    request = chat_pb2.ChatRequest(messages=[user("Paris")], tools=[WEATHER, CLOCK])
    response = await DemoProvider().chat(request, CALL)
    assert response.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    call = response.message.content[0].tool_call
    assert (call.id, call.name) == ("call_demo_0", "get_weather")
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "c"}
    frames = await stream(DemoProvider(), request)
    deltas = [f.tool_call for f in frames if f.WhichOneof("frame") == "tool_call"]
    assert (deltas[0].id, deltas[0].name) == ("call_demo_0", "get_weather")
    assert "".join(d.arguments for d in deltas) == call.arguments
    assert frames[-1].end.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS


async def test_named_tool_choice_and_none() -> None:
    named = chat_pb2.ChatRequest(
        messages=[user("x")],
        tools=[WEATHER, CLOCK],
        tool_choice=types_pb2.ToolChoice(function_name="get_time"),
    )
    call = (await DemoProvider().chat(named, CALL)).message.content[0].tool_call
    assert call.name == "get_time" and call.arguments == "{}"
    none = chat_pb2.ChatRequest(
        messages=[user("x")],
        tools=[WEATHER],
        tool_choice=types_pb2.ToolChoice(mode=types_pb2.TOOL_CHOICE_MODE_NONE),
    )
    assert (await DemoProvider().chat(none, CALL)).message.content[0].text == "Echo: x"
    unknown = chat_pb2.ChatRequest(
        messages=[user("x")],
        tools=[WEATHER],
        tool_choice=types_pb2.ToolChoice(function_name="nope"),
    )
    with pytest.raises(InvalidRequestError):
        await DemoProvider().chat(unknown, CALL)


async def test_answers_a_tool_result() -> None:
    request = chat_pb2.ChatRequest(
        tools=[WEATHER],
        messages=[
            user("Paris"),
            types_pb2.Message(
                role=types_pb2.ROLE_ASSISTANT,
                content=[
                    types_pb2.ContentPart(
                        tool_call=types_pb2.ToolCall(
                            id="call_demo_0", name="get_weather", arguments="{}"
                        )
                    )
                ],
            ),
            types_pb2.Message(
                role=types_pb2.ROLE_TOOL,
                content=[
                    types_pb2.ContentPart(
                        tool_result=types_pb2.ToolResult(
                            tool_call_id="call_demo_0", content="sunny"
                        )
                    )
                ],
            ),
        ],
    )
    response = await DemoProvider().chat(request, CALL)
    assert response.message.content[0].text == "The tool get_weather returned: sunny"
    assert response.finish_reason == types_pb2.FINISH_REASON_STOP


async def test_unknown_model_is_not_found() -> None:
    with pytest.raises(UpstreamNotFoundError) as caught:
        await DemoProvider().chat(
            chat_pb2.ChatRequest(messages=[user("x")]), UpstreamCall(model="gpt-5", api_key="")
        )
    assert caught.value.provider == "demo"
