"""ChatRequest → OpenAI Chat Completions JSON (server.providers.openai_compat.encode)."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError
from server.providers.codec import struct_to_dict
from server.providers.openai_compat.encode import encode_request

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def text(role: types_pb2.Role, value: str) -> types_pb2.Message:
    return types_pb2.Message(role=role, content=[types_pb2.ContentPart(text=value)])


def struct(value: dict) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def test_minimal_request_is_just_model_and_messages() -> None:
    request = chat_pb2.ChatRequest(messages=[text(types_pb2.ROLE_USER, "hi")])
    assert encode_request(request, "gpt-4o-mini", stream=False) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_every_sampling_field_is_sent_when_set() -> None:
    request = chat_pb2.ChatRequest(
        messages=[text(types_pb2.ROLE_USER, "hi")],
        temperature=0.0,
        top_p=0.5,
        max_tokens=64,
        stop=["END", "\n\n"],
        seed=7,
        presence_penalty=0.25,
        frequency_penalty=-0.5,
        n=1,
        user="user-42",
    )
    body = encode_request(request, "m", stream=False)
    assert body["temperature"] == 0.0  # an explicit 0 is sent, unset is not
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 64
    assert body["stop"] == ["END", "\n\n"]
    assert body["seed"] == 7
    assert body["presence_penalty"] == 0.25
    assert body["frequency_penalty"] == -0.5
    assert body["n"] == 1
    assert body["user"] == "user-42"
    assert "stream" not in body


def test_max_tokens_field_is_configurable() -> None:
    request = chat_pb2.ChatRequest(messages=[text(types_pb2.ROLE_USER, "hi")], max_tokens=5)
    body = encode_request(request, "o3", stream=False, max_tokens_field="max_completion_tokens")
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body


def test_n_above_one_is_refused() -> None:
    request = chat_pb2.ChatRequest(messages=[text(types_pb2.ROLE_USER, "hi")], n=2)
    with pytest.raises(UnsupportedFeatureError) as caught:
        encode_request(request, "m", stream=False)
    assert caught.value.param == "n"


def test_stream_always_asks_for_usage() -> None:
    request = chat_pb2.ChatRequest(messages=[text(types_pb2.ROLE_USER, "hi")])
    body = encode_request(request, "m", stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_roles_names_images_and_multi_part_content() -> None:
    request = chat_pb2.ChatRequest(
        messages=[
            text(types_pb2.ROLE_SYSTEM, "sys"),
            text(types_pb2.ROLE_DEVELOPER, "dev"),
            types_pb2.Message(
                role=types_pb2.ROLE_USER,
                name="alice",
                content=[
                    types_pb2.ContentPart(text="look:"),
                    types_pb2.ContentPart(
                        image=types_pb2.ImagePart(
                            url="https://example.com/cat.png",
                            detail=types_pb2.IMAGE_DETAIL_LOW,
                        )
                    ),
                    types_pb2.ContentPart(image=types_pb2.ImagePart(data=PNG)),
                    types_pb2.ContentPart(
                        image=types_pb2.ImagePart(data=b"GIF89a..", media_type="image/gif")
                    ),
                ],
            ),
        ]
    )
    messages = encode_request(request, "m", stream=False)["messages"]
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1] == {"role": "developer", "content": "dev"}
    assert messages[2]["name"] == "alice"
    parts = messages[2]["content"]
    assert parts[0] == {"type": "text", "text": "look:"}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
    }
    assert parts[2]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert parts[3]["image_url"]["url"].startswith("data:image/gif;base64,")


def test_image_bytes_of_unknown_type_need_a_media_type() -> None:
    image = types_pb2.ContentPart(image=types_pb2.ImagePart(data=b"????"))
    request = chat_pb2.ChatRequest(
        messages=[types_pb2.Message(role=types_pb2.ROLE_USER, content=[image])]
    )
    with pytest.raises(InvalidRequestError) as caught:
        encode_request(request, "m", stream=False)
    assert caught.value.param == "messages[0].content[0].media_type"


def test_image_in_a_system_message_is_unsupported_not_dropped() -> None:
    image = types_pb2.ContentPart(image=types_pb2.ImagePart(url="https://x/y.png"))
    request = chat_pb2.ChatRequest(
        messages=[
            types_pb2.Message(
                role=types_pb2.ROLE_SYSTEM, content=[types_pb2.ContentPart(text="a"), image]
            )
        ]
    )
    with pytest.raises(UnsupportedFeatureError):
        encode_request(request, "m", stream=False)


def test_assistant_tool_calls_and_tool_results() -> None:
    assistant = types_pb2.Message(
        role=types_pb2.ROLE_ASSISTANT,
        content=[
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(text="thinking...")),
            types_pb2.ContentPart(
                tool_call=types_pb2.ToolCall(id="call_1", name="a", arguments='{"x": 1}')
            ),
            types_pb2.ContentPart(tool_call=types_pb2.ToolCall(id="call_2", name="b")),
        ],
    )
    results = types_pb2.Message(
        role=types_pb2.ROLE_TOOL,
        content=[
            types_pb2.ContentPart(
                tool_result=types_pb2.ToolResult(tool_call_id="call_1", content="one")
            ),
            types_pb2.ContentPart(
                tool_result=types_pb2.ToolResult(tool_call_id="call_2", content="two")
            ),
        ],
    )
    request = chat_pb2.ChatRequest(messages=[text(types_pb2.ROLE_USER, "go"), assistant, results])
    messages = encode_request(request, "m", stream=False)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "a", "arguments": '{"x": 1}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": "two"},
    ]
    with_reasoning = encode_request(request, "m", stream=False, send_reasoning=True)
    assert with_reasoning["messages"][1]["reasoning_content"] == "thinking..."


def test_tool_results_inside_a_user_message_become_tool_messages_first() -> None:
    message = types_pb2.Message(
        role=types_pb2.ROLE_USER,
        content=[
            types_pb2.ContentPart(tool_result=types_pb2.ToolResult(tool_call_id="c", content="r")),
            types_pb2.ContentPart(text="and now?"),
        ],
    )
    messages = encode_request(chat_pb2.ChatRequest(messages=[message]), "m", stream=False)[
        "messages"
    ]
    assert messages == [
        {"role": "tool", "tool_call_id": "c", "content": "r"},
        {"role": "user", "content": "and now?"},
    ]


def test_assistant_refusal_and_text_are_kept() -> None:
    message = types_pb2.Message(
        role=types_pb2.ROLE_ASSISTANT,
        refusal="I can't help with that.",
        content=[types_pb2.ContentPart(text="Sorry.")],
    )
    encoded = encode_request(chat_pb2.ChatRequest(messages=[message]), "m", stream=False)
    assert encoded["messages"][0] == {
        "role": "assistant",
        "content": "Sorry.",
        "refusal": "I can't help with that.",
    }


def test_role_is_required() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        encode_request(
            chat_pb2.ChatRequest(messages=[types_pb2.Message(content=[])]), "m", stream=False
        )
    assert caught.value.param == "messages[0].role"


def test_tools_tool_choice_and_parallel_flag() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 14}},
        "required": ["city"],
        "additionalProperties": False,
    }
    request = chat_pb2.ChatRequest(
        messages=[text(types_pb2.ROLE_USER, "hi")],
        tools=[
            types_pb2.Tool(
                name="forecast", description="Weather", parameters=struct(schema), strict=True
            ),
            types_pb2.Tool(name="noop"),
        ],
        tool_choice=types_pb2.ToolChoice(function_name="forecast"),
        parallel_tool_calls=False,
    )
    body = encode_request(request, "m", stream=False)
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "forecast",
            "description": "Weather",
            "parameters": schema,
            "strict": True,
        },
    }
    # Struct holds doubles; integral numbers must go back out as ints.
    assert isinstance(
        body["tools"][0]["function"]["parameters"]["properties"]["days"]["maximum"], int
    )
    assert body["tools"][1] == {"type": "function", "function": {"name": "noop"}}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "forecast"}}
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("mode", "wire"),
    [
        (types_pb2.TOOL_CHOICE_MODE_AUTO, "auto"),
        (types_pb2.TOOL_CHOICE_MODE_NONE, "none"),
        (types_pb2.TOOL_CHOICE_MODE_REQUIRED, "required"),
    ],
)
def test_tool_choice_modes(mode: types_pb2.ToolChoiceMode, wire: str) -> None:
    request = chat_pb2.ChatRequest(
        messages=[text(types_pb2.ROLE_USER, "hi")],
        tools=[types_pb2.Tool(name="t")],
        tool_choice=types_pb2.ToolChoice(mode=mode),
    )
    assert encode_request(request, "m", stream=False)["tool_choice"] == wire


def test_response_formats() -> None:
    def fmt(response_format: types_pb2.ResponseFormat) -> object:
        request = chat_pb2.ChatRequest(
            messages=[text(types_pb2.ROLE_USER, "hi")], response_format=response_format
        )
        return encode_request(request, "m", stream=False).get("response_format")

    assert fmt(types_pb2.ResponseFormat(type=types_pb2.RESPONSE_FORMAT_TYPE_TEXT)) == {
        "type": "text"
    }
    assert fmt(types_pb2.ResponseFormat(type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)) == {
        "type": "json_object"
    }
    schema = {"type": "object", "properties": {"a": {"type": "number", "minimum": 0.5}}}
    assert fmt(
        types_pb2.ResponseFormat(
            type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            json_schema=types_pb2.JsonSchema(
                name="thing", description="A thing", schema=struct(schema), strict=False
            ),
        )
    ) == {
        "type": "json_schema",
        "json_schema": {
            "name": "thing",
            "description": "A thing",
            "schema": schema,
            "strict": False,
        },
    }
    assert fmt(types_pb2.ResponseFormat()) is None


def test_passthrough_is_merged_unchanged() -> None:
    request = chat_pb2.ChatRequest(
        messages=[text(types_pb2.ROLE_USER, "hi")],
        passthrough=struct(
            {
                "logit_bias": {"50256": -100},
                "reasoning_effort": "low",
                "top_logprobs": 3,
                "metadata": {"nested": [1, 2.5, True, None, "x"]},
            }
        ),
    )
    body = encode_request(request, "m", stream=False)
    assert body["logit_bias"] == {"50256": -100}
    assert body["reasoning_effort"] == "low"
    assert body["top_logprobs"] == 3 and isinstance(body["top_logprobs"], int)
    assert body["metadata"] == {"nested": [1, 2.5, True, None, "x"]}


@pytest.mark.parametrize("field", ["model", "messages", "stream", "stream_options"])
def test_passthrough_cannot_override_what_the_gateway_owns(field: str) -> None:
    request = chat_pb2.ChatRequest(
        messages=[text(types_pb2.ROLE_USER, "hi")], passthrough=struct({field: "x"})
    )
    with pytest.raises(InvalidRequestError) as caught:
        encode_request(request, "m", stream=True)
    assert caught.value.param == f"passthrough.{field}"


def test_struct_to_dict_keeps_large_and_fractional_numbers() -> None:
    assert struct_to_dict(struct({"big": 2.0**60, "frac": 0.1, "neg": -3})) == {
        "big": 2.0**60,
        "frac": 0.1,
        "neg": -3,
    }
