"""ChatRequest → Anthropic Messages API body (server.providers.anthropic.encode)."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import InvalidRequestError, UnsupportedFeatureError
from server.providers.anthropic.encode import JSON_TOOL_NAME, encode_request
from server.providers.anthropic.models import model_info

R = types_pb2


def msg(role: int, *parts: types_pb2.ContentPart, **kw: str) -> types_pb2.Message:
    return types_pb2.Message(role=role, content=list(parts), **kw)  # type: ignore[arg-type]


def text(t: str) -> types_pb2.ContentPart:
    return types_pb2.ContentPart(text=t)


def call(id_: str, name: str, args: str, signature: str = "") -> types_pb2.ContentPart:
    return types_pb2.ContentPart(
        tool_call=types_pb2.ToolCall(id=id_, name=name, arguments=args, signature=signature)
    )


def result(id_: str, content: str, *, is_error: bool = False) -> types_pb2.ContentPart:
    return types_pb2.ContentPart(
        tool_result=types_pb2.ToolResult(tool_call_id=id_, content=content, is_error=is_error)
    )


def struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def req(*messages: types_pb2.Message, **kw: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model="anthropic/x", messages=list(messages), **kw)  # type: ignore[arg-type]


def body_of(request: chat_pb2.ChatRequest, model: str = "claude-sonnet-4-5") -> dict:
    return encode_request(request, model).body


def test_system_and_developer_become_system_and_max_tokens_defaults_per_model() -> None:
    r = req(msg(R.ROLE_SYSTEM, text("Be brief.")), msg(R.ROLE_USER, text("Hi")))
    body = body_of(r)
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert body["max_tokens"] == 64000
    assert body_of(r, "claude-3-5-haiku-20241022")["max_tokens"] == 8192
    assert body_of(r, "claude-opus-4-20250514")["max_tokens"] == 32000
    assert body_of(r, "some-unknown-model")["max_tokens"] == 4096
    assert "stream" not in body

    two = req(
        msg(R.ROLE_SYSTEM, text("A")),
        msg(R.ROLE_DEVELOPER, text("B")),
        msg(R.ROLE_USER, text("Hi")),
        max_tokens=7,
    )
    body = body_of(two)
    assert body["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert body["max_tokens"] == 7
    assert encode_request(two, "claude-sonnet-4-5", stream=True).body["stream"] is True


def test_model_table_prefers_longest_prefix_and_dated_snapshots() -> None:
    assert model_info("claude-opus-4-5-20251101").max_output_tokens == 64000
    assert model_info("claude-opus-4-1").structured_output is True
    assert model_info("claude-opus-4").structured_output is False
    assert model_info("claude-opus-4-7").rejects_sampling is True
    assert model_info("claude-haiku-4-50").max_output_tokens == 4096


def test_consecutive_same_role_turns_merge_and_parallel_results_share_one_user_turn() -> None:
    r = req(
        msg(R.ROLE_USER, text("Who is youngest?")),
        msg(R.ROLE_USER, text("Be quick.")),
        msg(
            R.ROLE_ASSISTANT,
            text("Let me check."),
            call("toolu_1", "info", '{"name": "Alice"}'),
            call("toolu_2", "info", '{"name": "Bob"}'),
        ),
        msg(R.ROLE_TOOL, result("toolu_1", "alice is 40")),
        msg(R.ROLE_TOOL, result("toolu_2", "boom", is_error=True)),
        msg(R.ROLE_USER, text("And?")),
    )
    messages = body_of(r)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "Who is youngest?"},
        {"type": "text", "text": "Be quick."},
    ]
    assert messages[1]["content"][1:] == [
        {"type": "tool_use", "id": "toolu_1", "name": "info", "input": {"name": "Alice"}},
        {"type": "tool_use", "id": "toolu_2", "name": "info", "input": {"name": "Bob"}},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "alice is 40"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
        {"type": "text", "text": "And?"},
    ]


def test_tool_call_arguments_must_be_a_json_object() -> None:
    r = req(msg(R.ROLE_USER, text("x")), msg(R.ROLE_ASSISTANT, call("t", "f", "[1, 2]")))
    with pytest.raises(InvalidRequestError) as exc:
        body_of(r)
    assert exc.value.param == "messages[1].content[0].tool_call.arguments"
    empty = req(msg(R.ROLE_USER, text("x")), msg(R.ROLE_ASSISTANT, call("t", "f", "")))
    assert body_of(empty)["messages"][1]["content"][0]["input"] == {}


def test_reasoning_round_trips_only_with_an_anthropic_signature() -> None:
    r = req(
        msg(R.ROLE_USER, text("x")),
        msg(
            R.ROLE_ASSISTANT,
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(text="hmm", signature="sig")),
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(redacted_data="enc")),
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(text="unsigned")),
            text("answer"),
        ),
    )
    assert body_of(r)["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "enc"},
        {"type": "text", "text": "answer"},
    ]
    # A turn left empty (only another provider's reasoning) is not sent at all.
    foreign = req(
        msg(R.ROLE_USER, text("x")),
        msg(R.ROLE_ASSISTANT, types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(text="t"))),
        msg(R.ROLE_USER, text("y")),
    )
    assert body_of(foreign)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}
    ]


def test_images_become_url_or_base64_sources() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    b64 = base64.b64encode(png).decode()
    r = req(
        msg(
            R.ROLE_USER,
            types_pb2.ContentPart(image=types_pb2.ImagePart(url="https://x.test/cat.png")),
            types_pb2.ContentPart(image=types_pb2.ImagePart(url=f"data:image/png;base64,{b64}")),
            types_pb2.ContentPart(image=types_pb2.ImagePart(data=png, media_type="image/png")),
        )
    )
    content = body_of(r)["messages"][0]["content"]
    assert content[0] == {
        "type": "image",
        "source": {"type": "url", "url": "https://x.test/cat.png"},
    }
    b64_source = {"type": "base64", "media_type": "image/png", "data": b64}
    assert content[1] == {"type": "image", "source": b64_source}
    assert content[2] == {"type": "image", "source": b64_source}
    bad = req(msg(R.ROLE_USER, types_pb2.ContentPart(image=types_pb2.ImagePart(data=png))))
    with pytest.raises(InvalidRequestError):
        body_of(bad)
    with pytest.raises(InvalidRequestError):
        body_of(
            req(
                msg(
                    R.ROLE_USER,
                    types_pb2.ContentPart(
                        image=types_pb2.ImagePart(url="data:image/png;base64,@@@")
                    ),
                )
            )
        )


def test_sampling_and_stop_mapped_unsupported_fields_refused() -> None:
    base = msg(R.ROLE_USER, text("x"))
    body = body_of(req(base, temperature=0.5, top_p=0.9, stop=["END"], user="u-1"))
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    for field, value in (("seed", 3), ("presence_penalty", 0.1), ("frequency_penalty", 0.1)):
        with pytest.raises(UnsupportedFeatureError) as exc:
            body_of(req(base, **{field: value}))
        assert exc.value.param == field
    with pytest.raises(UnsupportedFeatureError):
        body_of(req(base, n=2))
    with pytest.raises(UnsupportedFeatureError):
        body_of(req(base, temperature=1.5))
    with pytest.raises(UnsupportedFeatureError) as exc:
        body_of(req(base, temperature=0.5), "claude-opus-4-7")
    assert exc.value.param == "temperature"
    with pytest.raises(UnsupportedFeatureError):
        body_of(req(msg(R.ROLE_USER, text("x"), name="bob")))


def test_passthrough_maps_known_fields_and_names_the_rest() -> None:
    base = msg(R.ROLE_USER, text("x"))
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = body_of(req(base, passthrough=struct({"top_k": 5, "thinking": thinking})))
    assert body["top_k"] == 5
    assert body["thinking"] == thinking  # integral numbers stay ints
    assert isinstance(body["thinking"]["budget_tokens"], int)
    with pytest.raises(UnsupportedFeatureError) as exc:
        body_of(req(base, passthrough=struct({"logit_bias": {}, "reasoning_effort": "low"})))
    assert "logit_bias" in exc.value.message and "reasoning_effort" in exc.value.message


def test_tools_and_tool_choice() -> None:
    params = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    tools = [
        types_pb2.Tool(name="search", description="Search", parameters=struct(params)),
        types_pb2.Tool(name="noargs"),
    ]
    base = msg(R.ROLE_USER, text("x"))
    body = body_of(req(base, tools=tools))
    assert body["tools"] == [
        {"name": "search", "description": "Search", "input_schema": params},
        {"name": "noargs", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "auto"}

    def choice(**kw: object) -> dict:
        return body_of(req(base, tools=tools, **kw))["tool_choice"]

    mode = types_pb2.ToolChoice
    assert choice(tool_choice=mode(mode=R.TOOL_CHOICE_MODE_REQUIRED)) == {"type": "any"}
    assert choice(tool_choice=mode(mode=R.TOOL_CHOICE_MODE_NONE)) == {"type": "none"}
    assert choice(tool_choice=mode(function_name="search")) == {"type": "tool", "name": "search"}
    assert choice(parallel_tool_calls=False) == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    strict = [types_pb2.Tool(name="s", parameters=struct(params), strict=True)]
    assert body_of(req(base, tools=strict))["tools"][0]["strict"] is True
    with pytest.raises(UnsupportedFeatureError):
        body_of(req(base, tools=strict), "claude-3-5-haiku-latest")
    with pytest.raises(InvalidRequestError):
        body_of(req(base, tool_choice=mode(mode=R.TOOL_CHOICE_MODE_REQUIRED)))


def test_json_schema_native_where_supported_else_forced_tool() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    rf = types_pb2.ResponseFormat(
        type=R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        json_schema=types_pb2.JsonSchema(name="city", schema=struct(schema)),
    )
    base = msg(R.ROLE_USER, text("x"))
    native = encode_request(req(base, response_format=rf), "claude-sonnet-4-5")
    assert native.json_tool is None
    assert native.body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in native.body

    forced = encode_request(req(base, response_format=rf), "claude-3-5-haiku-20241022")
    assert forced.json_tool == JSON_TOOL_NAME
    assert forced.body["tools"][0]["input_schema"] == schema
    assert forced.body["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}

    json_mode = types_pb2.ResponseFormat(type=R.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    jm = encode_request(req(base, response_format=json_mode), "claude-sonnet-4-5")
    assert jm.json_tool == JSON_TOOL_NAME
    assert jm.body["tools"][0]["input_schema"] == {"type": "object"}

    with pytest.raises(UnsupportedFeatureError):
        encode_request(
            req(base, response_format=json_mode, tools=[types_pb2.Tool(name="t")]),
            "claude-sonnet-4-5",
        )
