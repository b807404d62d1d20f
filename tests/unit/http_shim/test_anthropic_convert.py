"""Anthropic Messages JSON ⇄ switchboard.v1: requests, responses, errors and the SSE encoder.

Streams are checked by feeding the encoder's SSE through the official ``anthropic`` SDK's own
accumulator (``anthropic.lib.streaming._messages.accumulate_event``), so "the SDK builds the
right final message from our events" is what is asserted, not a hand-written expectation.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    RateLimitedError,
    UnsupportedFeatureError,
)
from server.http_shim import anthropic_convert as ac
from server.http_shim.anthropic_stream import StreamEncoder, stream_error_event
from server.providers.anthropic.codec import RAW_ARGUMENTS_KEY, stop_reason

R = types_pb2
Frame = chat_pb2.StreamChatResponse


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": "demo/echo",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    data.update(overrides)
    return data


def decode(data: object) -> tuple[chat_pb2.ChatRequest, bool]:
    """``decode_request`` on the JSON of ``data`` (it takes the raw body)."""
    return ac.decode_request(orjson.dumps(data))


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs; every event must have both lines and data must match the event."""
    events = []
    for chunk in raw.split(b"\n\n"):
        if not chunk:
            continue
        lines = chunk.split(b"\n")
        assert len(lines) == 2, chunk
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), chunk
        name = lines[0][7:].decode()
        data = orjson.loads(lines[1][6:])
        assert data["type"] == name
        events.append((name, data))
    assert raw.endswith(b"\n\n")
    return events


def accumulate(events: list[tuple[str, dict[str, Any]]]) -> Any:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    return snapshot


# --- request ------------------------------------------------------------------------------------


def test_minimal_request() -> None:
    request, stream = decode(body())
    assert stream is False
    assert request.model == "demo/echo"
    assert request.max_tokens == 64
    assert [m.role for m in request.messages] == [R.ROLE_USER]
    assert request.messages[0].content[0].text == "hi"
    assert not request.HasField("temperature")
    assert not request.HasField("passthrough")


def test_system_string_and_blocks() -> None:
    request, _ = decode(body(system="be brief"))
    assert request.messages[0].role == R.ROLE_SYSTEM
    assert request.messages[0].content[0].text == "be brief"
    blocks = [
        {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "two"},
    ]
    request, _ = decode(body(system=blocks))
    assert request.messages[0].content[0].text == "one\n\ntwo"
    assert request.messages[1].role == R.ROLE_USER


@pytest.mark.parametrize("missing", ["max_tokens", "model", "messages"])
def test_required_fields(missing: str) -> None:
    data = body()
    del data[missing]
    with pytest.raises(InvalidRequestError) as info:
        decode(data)
    assert info.value.param == missing
    assert info.value.http_status == 400
    assert missing in info.value.message


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("max_tokens", 0, "max_tokens"),
        ("max_tokens", "10", "max_tokens"),
        ("max_tokens", True, "max_tokens"),
        ("temperature", "hot", "temperature"),
        ("stream", "yes", "stream"),
        ("stop_sequences", "END", "stop_sequences"),
        ("messages", [{"role": "system", "content": "x"}], "messages[0].role"),
        ("messages", [{"role": "user", "content": 3}], "messages[0].content"),
        (
            "messages",
            [{"role": "user", "content": [{"text": "no type"}]}],
            "messages[0].content[0].type",
        ),
        ("metadata", {"user_id": "u", "tier": "gold"}, "metadata.tier"),
        ("tool_choice", {"type": "sometimes"}, "tool_choice.type"),
        ("tools", [{"name": "t"}], "tools[0].input_schema"),
    ],
)
def test_invalid_values(field: str, value: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode(body(**{field: value}))
    assert info.value.param == param


def test_not_an_object() -> None:
    with pytest.raises(InvalidRequestError):
        decode([1, 2])


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"model": "m",}', b"\xff", b"NaN"])
def test_invalid_json(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ac.decode_request(raw)
    assert (info.value.message, info.value.param) == ("The request body is not valid JSON.", "body")


def _deep(depth: int) -> str:
    """A placeholder for arrays nested ``depth`` deep: too deep for ``orjson.dumps`` to write."""
    return f"<deep {depth}>"


def raw_json(data: Any) -> bytes:
    """The JSON of ``data`` with every ``_deep`` placeholder written out."""
    return re.sub(
        rb'"<deep (\d+)>"',
        lambda m: b"[" * int(m[1]) + b"]" * int(m[1]),
        orjson.dumps(data),
    )


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        # `type` is looked up in a table; a list there used to be a TypeError (a 500).
        ({"tool_choice": {"type": ["auto"]}}, "tool_choice.type"),
        ({"tool_choice": {"type": {"a": 1}}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        # Struct conversion recursed past Python's limit (RecursionError, a 500).
        ({"x_unknown": {"a": _deep(500)}}, "x_unknown"),
        ({"output_config": {"effort": _deep(500)}}, "output_config"),
        (
            {"tools": [{"name": "t", "input_schema": {"a": _deep(500)}}]},
            "tools[0].input_schema",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"a": _deep(300)}}}},
            "output_config.format.schema",
        ),
        # orjson writes at most 254 levels (JSONEncodeError, a 500).
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "t", "name": "n", "input": {"a": _deep(600)}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].input",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]},
            "messages[0].content[0].source",
        ),
        ({"system": [{"type": "image"}]}, "system[0]"),
        ({"messages": [{"role": "user", "content": [7]}]}, "messages[0].content[0]"),
    ],
)
def test_malformed_bodies_are_a_400_naming_the_field(overrides: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ac.decode_request(raw_json(body(**overrides)))
    assert info.value.http_status == 400
    assert info.value.param == param
    assert info.value.field_violations[0].field == param
    assert param in info.value.message


def test_sampling_stop_metadata_stream() -> None:
    request, stream = decode(
        body(
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END", "STOP"],
            metadata={"user_id": "user-7"},
            stream=True,
        )
    )
    assert stream is True
    assert request.temperature == 0.5
    assert request.top_p == pytest.approx(0.9)
    assert list(request.stop) == ["END", "STOP"]
    assert request.user == "user-7"
    assert request.passthrough["top_k"] == 40


def test_unknown_fields_pass_through() -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    request, _ = decode(body(thinking=thinking, service_tier="auto"))
    from google.protobuf.json_format import MessageToDict

    assert MessageToDict(request.passthrough) == {"thinking": thinking, "service_tier": "auto"}


def test_output_config_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request, _ = decode(
        body(output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"})
    )
    rf = request.response_format
    assert rf.type == R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    assert rf.json_schema.name
    assert rf.json_schema.schema["properties"]["a"]["type"] == "string"
    assert request.passthrough["output_config"]["effort"] == "low"


@pytest.mark.parametrize(
    "config",
    [None, "fast", [1], {"effort": "low"}, {"format": None}, {"format": {"type": "xml"}}],
)
def test_other_output_configs_pass_through_unchanged(config: Any) -> None:
    from google.protobuf.json_format import MessageToDict

    request, _ = decode(body(output_config=config))
    assert MessageToDict(request.passthrough) == {"output_config": config}
    assert request.response_format.type == R.RESPONSE_FORMAT_TYPE_UNSPECIFIED


def test_images_base64_and_url() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    content = [
        {"type": "text", "text": "what is this?"},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(png).decode(),
            },
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    request, _ = decode(body(messages=[{"role": "user", "content": content}]))
    parts = request.messages[0].content
    assert parts[0].text == "what is this?"
    assert parts[1].image.data == png
    assert parts[1].image.media_type == "image/png"
    assert parts[2].image.url == "https://example.com/cat.jpg"


def test_bad_images() -> None:
    bad = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%"}}
    with pytest.raises(InvalidRequestError) as info:
        decode(body(messages=[{"role": "user", "content": [bad]}]))
    assert info.value.param == "messages[0].content[0].source.data"
    file_src = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    with pytest.raises(UnsupportedFeatureError):
        decode(body(messages=[{"role": "user", "content": [file_src]}]))


def test_unsupported_blocks_are_refused() -> None:
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    with pytest.raises(UnsupportedFeatureError) as info:
        decode(body(messages=[{"role": "user", "content": [doc]}]))
    assert "document" in info.value.message
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(UnsupportedFeatureError):
        decode(body(tools=[server_tool]))


def test_tool_round_trip_conversation() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "two cities", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no"}, {"type": "text", "text": "data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    tools = [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "cache_control": {"type": "ephemeral"},
        }
    ]
    request, _ = decode(
        body(
            messages=messages,
            tools=tools,
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )
    )
    roles = [m.role for m in request.messages]
    assert roles == [R.ROLE_USER, R.ROLE_ASSISTANT, R.ROLE_TOOL, R.ROLE_TOOL, R.ROLE_USER]
    assistant = request.messages[1].content
    assert assistant[0].reasoning.text == "two cities"
    assert assistant[0].reasoning.signature == "sig=="
    assert assistant[1].reasoning.redacted_data == "opaque"
    assert assistant[2].text == "Checking."
    call = assistant[3].tool_call
    assert (call.id, call.name, orjson.loads(call.arguments)) == (
        "toolu_1",
        "weather",
        {"city": "Paris"},
    )
    first = request.messages[2].content[0].tool_result
    assert (first.tool_call_id, first.content, first.is_error, first.name) == (
        "toolu_1",
        "18C",
        False,
        "weather",
    )
    second = request.messages[3].content[0].tool_result
    assert (second.tool_call_id, second.content, second.is_error) == ("toolu_2", "no\ndata", True)
    assert request.messages[4].content[0].text == "and tomorrow?"
    tool = request.tools[0]
    assert tool.name == "weather" and tool.description == "Current weather"
    assert list(tool.parameters["required"]) == ["city"]
    assert request.tool_choice.mode == R.TOOL_CHOICE_MODE_REQUIRED
    assert request.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, ("mode", R.TOOL_CHOICE_MODE_AUTO)),
        ({"type": "none"}, ("mode", R.TOOL_CHOICE_MODE_NONE)),
        ({"type": "tool", "name": "weather"}, ("function_name", "weather")),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: tuple[str, Any]) -> None:
    request, _ = decode(body(tool_choice=choice))
    kind = request.tool_choice.WhichOneof("choice")
    assert (kind, getattr(request.tool_choice, kind)) == expected
    assert not request.HasField("parallel_tool_calls")


# --- response -----------------------------------------------------------------------------------


def make_response(finish: int = R.FINISH_REASON_STOP) -> chat_pb2.ChatResponse:
    response = chat_pb2.ChatResponse(id="abc123", model="openai/gpt-4o-mini", finish_reason=finish)
    response.message.role = R.ROLE_ASSISTANT
    response.usage.input_tokens = 100
    response.usage.cached_input_tokens = 30
    response.usage.cache_write_input_tokens = 20
    response.usage.output_tokens = 7
    return response


def test_response_text_and_usage_convention() -> None:
    response = make_response()
    response.message.content.add().text = "Hello"
    response.message.content.add().text = " world"
    out = orjson.loads(ac.encode_response(response))
    assert out == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "openai/gpt-4o-mini",
        "content": [{"type": "text", "text": "Hello world"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 50,
            "output_tokens": 7,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 30,
        },
    }
    # The official SDK's model accepts it as a Message.
    from anthropic.types import Message

    message = Message.model_validate(out)
    assert message.usage.cache_read_input_tokens == 30


def test_response_tools_thinking_and_invalid_arguments() -> None:
    response = make_response(R.FINISH_REASON_TOOL_CALLS)
    content = response.message.content
    r = content.add().reasoning
    r.text, r.signature = "hmm", "sig"
    content.add().reasoning.redacted_data = "secret"
    content.add().text = "Let me check."
    content.add().tool_call.CopyFrom(
        types_pb2.ToolCall(id="call_1", name="weather", arguments='{"city":"Paris"}')
    )
    content.add().tool_call.CopyFrom(types_pb2.ToolCall(id="", name="broken", arguments='{"ci'))
    content.add().tool_call.CopyFrom(types_pb2.ToolCall(id="call_3", name="noargs", arguments=""))
    content.add().tool_call.CopyFrom(types_pb2.ToolCall(id="call_4", name="list", arguments="[1]"))
    out = ac.response_json(response)
    blocks = out["content"]
    assert blocks[0] == {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    assert blocks[1] == {"type": "redacted_thinking", "data": "secret"}
    assert blocks[2] == {"type": "text", "text": "Let me check."}
    assert blocks[3] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert blocks[4]["input"] == {RAW_ARGUMENTS_KEY: '{"ci'}
    assert blocks[4]["id"].startswith("toolu_") and len(blocks[4]["id"]) > 10
    assert blocks[5]["input"] == {}
    assert blocks[6]["input"] == {RAW_ARGUMENTS_KEY: "[1]"}
    assert out["stop_reason"] == "tool_use"
    from anthropic.types import Message

    Message.model_validate(out)


@pytest.mark.parametrize(
    ("finish", "has_tools", "expected"),
    [
        (R.FINISH_REASON_STOP, False, "end_turn"),
        (R.FINISH_REASON_UNSPECIFIED, False, "end_turn"),
        (R.FINISH_REASON_LENGTH, False, "max_tokens"),
        (R.FINISH_REASON_TOOL_CALLS, True, "tool_use"),
        (R.FINISH_REASON_CONTENT_FILTER, False, "refusal"),
        # An upstream that says "stop" while calling tools still asks the client to run them.
        (R.FINISH_REASON_STOP, True, "tool_use"),
        (R.FINISH_REASON_LENGTH, True, "max_tokens"),
    ],
)
def test_stop_reasons(finish: int, has_tools: bool, expected: str) -> None:
    assert stop_reason(finish, has_tools) == expected


def test_refusal_becomes_text() -> None:
    response = make_response(R.FINISH_REASON_CONTENT_FILTER)
    response.message.refusal = "I can't help with that."
    out = ac.response_json(response)
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (501, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_types(status: int, kind: str) -> None:
    assert ac.error_type(status) == kind


def test_error_body_shape() -> None:
    out = orjson.loads(ac.encode_error(RateLimitedError("slow down", retry_after=2), "req1"))
    assert out == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
        "request_id": "req1",
    }
    events = parse_sse(stream_error_event(504, "too slow"))
    assert events == [
        ("error", {"type": "error", "error": {"type": "timeout_error", "message": "too slow"}})
    ]
    assert DeadlineExceededError("x").http_status == 504


# --- streaming ----------------------------------------------------------------------------------


def start_frame() -> Frame:
    f = Frame()
    f.start.id = "req9"
    f.start.model = "demo/echo"
    return f


def text(t: str) -> Frame:
    f = Frame()
    f.text.text = t
    return f


def tool(index: int, args: str, id: str = "", name: str = "") -> Frame:
    f = Frame()
    f.tool_call.index = index
    f.tool_call.id = id
    f.tool_call.name = name
    f.tool_call.arguments = args
    return f


def reasoning(t: str = "", sig: str = "") -> Frame:
    f = Frame()
    f.reasoning.text = t
    f.reasoning.signature = sig
    return f


def end(finish: int, input_tokens: int = 12, output: int = 5, cached: int = 2) -> Frame:
    f = Frame()
    f.end.finish_reason = finish  # type: ignore[assignment]
    f.end.usage.input_tokens = input_tokens
    f.end.usage.output_tokens = output
    f.end.usage.cached_input_tokens = cached
    return f


def assert_block_discipline(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Anthropic's sequence: message_start, blocks 0..n each start → deltas → stop, one open at
    a time, then message_delta and message_stop."""
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    open_index = None
    expected_next = 0
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == expected_next
            open_index = data["index"]
            expected_next += 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert name == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None


def run(frames: list[Frame]) -> list[tuple[str, dict[str, Any]]]:
    encoder = StreamEncoder("demo/echo")
    events = parse_sse(b"".join(encoder.encode(f) for f in frames))
    assert_block_discipline(events)
    return events


def test_stream_text_only_event_sequence() -> None:
    events = run([start_frame(), text("Hel"), text(""), text("lo"), end(R.FINISH_REASON_STOP)])
    assert [e for e, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_req9" and start["content"] == [] and start["stop_reason"] is None
    delta = events[5][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2,
    }
    message = accumulate(events)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello"
    assert message.usage.input_tokens == 10
    assert message.usage.output_tokens == 5
    assert message.usage.cache_read_input_tokens == 2


def test_stream_thinking_text_then_parallel_tools() -> None:
    frames = [
        start_frame(),
        reasoning("let me "),
        reasoning("think"),
        reasoning(sig="SIG"),
        text("Checking both."),
        tool(0, "", id="call_a", name="weather"),
        tool(0, '{"city":'),
        tool(0, '"Paris"}'),
        tool(1, '{"city":"Rome"}', id="call_b", name="weather"),
        end(R.FINISH_REASON_TOOL_CALLS),
    ]
    events = run(frames)
    starts = [
        (d["index"], d["content_block"]["type"]) for e, d in events if e == "content_block_start"
    ]
    stops = [d["index"] for e, d in events if e == "content_block_stop"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    assert stops == [0, 1, 2, 3]
    message = accumulate(events)
    assert message.content[0].thinking == "let me think"
    assert message.content[0].signature == "SIG"
    assert message.content[1].text == "Checking both."
    assert (message.content[2].id, message.content[2].name) == ("call_a", "weather")
    assert message.content[2].input == {"city": "Paris"}
    assert message.content[3].input == {"city": "Rome"}
    assert message.stop_reason == "tool_use"


def test_stream_redacted_thinking_is_its_own_block() -> None:
    redacted = Frame(reasoning=chat_pb2.ReasoningDelta(redacted_data="opaque"))
    events = run([start_frame(), reasoning("hm"), redacted, text("ok"), end(R.FINISH_REASON_STOP)])
    starts = [d["content_block"] for e, d in events if e == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "redacted_thinking", "text"]
    assert starts[1]["data"] == "opaque"
    message = accumulate(events)
    assert message.content[1].type == "redacted_thinking"
    assert message.content[1].data == "opaque"


def test_stream_tool_calls_with_stop_finish_still_tool_use() -> None:
    events = run([start_frame(), tool(0, "{}", id="c", name="t"), end(R.FINISH_REASON_STOP)])
    assert accumulate(events).stop_reason == "tool_use"


def test_stream_interleaved_parallel_calls_stay_sequential() -> None:
    frames = [
        start_frame(),
        tool(0, '{"a":', id="c0", name="t"),
        tool(1, "", id="c1", name="u"),
        tool(1, '{"b":'),
        tool(0, "1}"),
        tool(2, '{"c":3}', id="c2", name="t"),
        tool(1, "2}"),
        end(R.FINISH_REASON_TOOL_CALLS),
    ]
    events = run(frames)
    message = accumulate(events)
    assert [(b.id, b.name, b.input) for b in message.content] == [
        ("c0", "t", {"a": 1}),
        ("c1", "u", {"b": 2}),
        ("c2", "t", {"c": 3}),
    ]
    # The first call streamed live; the ones that began while it was open come whole.
    deltas = [d["delta"]["partial_json"] for e, d in events if e == "content_block_delta"]
    assert deltas == ['{"a":', "1}", '{"b":2}', '{"c":3}']


def test_stream_text_after_tools_flushes_held_calls_first() -> None:
    frames = [
        start_frame(),
        tool(0, "{}", id="c0", name="t"),
        tool(1, "{}", id="c1", name="t"),
        text("done"),
        end(R.FINISH_REASON_STOP),
    ]
    message = accumulate(run(frames))
    assert [b.type for b in message.content] == ["tool_use", "tool_use", "text"]
    assert message.stop_reason == "tool_use"


def test_stream_empty_answer() -> None:
    events = run([start_frame(), end(R.FINISH_REASON_LENGTH)])
    assert [e for e, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert accumulate(events).stop_reason == "max_tokens"
