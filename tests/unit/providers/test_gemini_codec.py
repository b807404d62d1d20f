"""ChatRequest ↔ Gemini generateContent JSON (gemini encode, decode, stream and errors)."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    InvalidRequestError,
    UnsupportedFeatureError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
)
from server.providers.gemini.decode import decode_response
from server.providers.gemini.encode import encode_request
from server.providers.gemini.errors import error_for_response
from server.providers.gemini.stream import StreamDecoder

R = types_pb2


def msg(role: int, *parts: types_pb2.ContentPart) -> types_pb2.Message:
    return types_pb2.Message(role=role, content=list(parts))  # type: ignore[arg-type]


def text(t: str) -> types_pb2.ContentPart:
    return types_pb2.ContentPart(text=t)


def call(id_: str, name: str, args: str, signature: str = "") -> types_pb2.ContentPart:
    return types_pb2.ContentPart(
        tool_call=types_pb2.ToolCall(id=id_, name=name, arguments=args, signature=signature)
    )


def result(id_: str, content: str, *, name: str = "", is_error: bool = False):
    return types_pb2.ContentPart(
        tool_result=types_pb2.ToolResult(
            tool_call_id=id_, content=content, name=name, is_error=is_error
        )
    )


def struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def req(*messages: types_pb2.Message, **kw: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model="gemini/x", messages=list(messages), **kw)  # type: ignore[arg-type]


def test_roles_system_and_generation_config() -> None:
    r = req(
        msg(R.ROLE_SYSTEM, text("Be brief.")),
        msg(R.ROLE_USER, text("Hi")),
        msg(R.ROLE_ASSISTANT, text("Hello")),
        msg(R.ROLE_USER, text("Bye")),
        temperature=0.3,
        top_p=0.8,
        max_tokens=50,
        stop=["END"],
        seed=7,
        presence_penalty=0.5,
    )
    body = encode_request(r)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello"}]},
        {"role": "user", "parts": [{"text": "Bye"}]},
    ]
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "seed": 7,
        "presencePenalty": 0.5,
    }
    assert "tools" not in body and "toolConfig" not in body


def test_tool_calls_results_by_name_and_signatures() -> None:
    r = req(
        msg(R.ROLE_USER, text("jokes")),
        msg(
            R.ROLE_ASSISTANT,
            call("c1", "topic", "{}", signature="SIG1"),
            call("c2", "topic", '{"n": 2}'),
        ),
        msg(R.ROLE_TOOL, result("c1", "cars")),
        msg(R.ROLE_TOOL, result("c2", "oops", is_error=True)),
        msg(R.ROLE_TOOL, result("orphan", "x", name="other")),
    )
    contents = encode_request(r)["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "topic", "args": {}, "id": "c1"}, "thoughtSignature": "SIG1"},
            {"functionCall": {"name": "topic", "args": {"n": 2}, "id": "c2"}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "topic", "response": {"output": "cars"}, "id": "c1"}},
            {"functionResponse": {"name": "topic", "response": {"error": "oops"}, "id": "c2"}},
            {"functionResponse": {"name": "other", "response": {"output": "x"}, "id": "orphan"}},
        ],
    }
    with pytest.raises(InvalidRequestError):
        encode_request(req(msg(R.ROLE_TOOL, result("unknown", "x"))))


def test_reasoning_parts_round_trip() -> None:
    r = req(
        msg(R.ROLE_USER, text("q")),
        msg(
            R.ROLE_ASSISTANT,
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(text="think", signature="T")),
            text("answer"),
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(signature="S")),
            types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(redacted_data="anthropic")),
        ),
    )
    assert encode_request(r)["contents"][1]["parts"] == [
        {"text": "think", "thought": True, "thoughtSignature": "T"},
        {"text": "answer", "thoughtSignature": "S"},
    ]


def test_images_tools_tool_choice_and_json() -> None:
    png = b"\x89PNG fake"
    b64 = base64.b64encode(png).decode()
    r = req(
        msg(
            R.ROLE_USER,
            types_pb2.ContentPart(image=types_pb2.ImagePart(data=png, media_type="image/png")),
            types_pb2.ContentPart(image=types_pb2.ImagePart(url=f"data:image/jpeg;base64,{b64}")),
            types_pb2.ContentPart(image=types_pb2.ImagePart(url="https://x.test/a.png?s=1")),
        ),
        tools=[
            types_pb2.Tool(name="f", description="F", parameters=struct({"type": "object"})),
            types_pb2.Tool(name="g"),
        ],
        tool_choice=types_pb2.ToolChoice(function_name="f"),
        response_format=types_pb2.ResponseFormat(
            type=R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            json_schema=types_pb2.JsonSchema(name="s", schema=struct({"type": "object"})),
        ),
    )
    body = encode_request(r)
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": b64}},
        {"inlineData": {"mimeType": "image/jpeg", "data": b64}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.png?s=1"}},
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "f", "description": "F", "parametersJsonSchema": {"type": "object"}},
                {"name": "g"},
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}
    }
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["generationConfig"]["responseJsonSchema"] == {"type": "object"}
    tools = [types_pb2.Tool(name="f")]
    base = msg(R.ROLE_USER, text("x"))
    for mode, wire in (
        (R.TOOL_CHOICE_MODE_AUTO, "AUTO"),
        (R.TOOL_CHOICE_MODE_NONE, "NONE"),
        (R.TOOL_CHOICE_MODE_REQUIRED, "ANY"),
    ):
        choice = types_pb2.ToolChoice(mode=mode)
        config = encode_request(req(base, tools=tools, tool_choice=choice))["toolConfig"]
        assert config == {"functionCallingConfig": {"mode": wire}}
    with pytest.raises(UnsupportedFeatureError):
        encode_request(req(base, tools=tools, parallel_tool_calls=False))
    with pytest.raises(UnsupportedFeatureError):
        encode_request(req(base, tools=[types_pb2.Tool(name="s", strict=True)]))
    with pytest.raises(UnsupportedFeatureError):
        encode_request(
            req(
                msg(
                    R.ROLE_USER, types_pb2.ContentPart(image=types_pb2.ImagePart(url="https://x/y"))
                )
            )
        )


def test_passthrough_known_fields_and_refusals() -> None:
    base = msg(R.ROLE_USER, text("x"))
    body = encode_request(
        req(
            base,
            passthrough=struct(
                {
                    "top_k": 40,
                    "thinking_config": {"thinking_budget": 0},
                    "cached_content": "cachedContents/abc",
                }
            ),
        )
    )
    assert body["generationConfig"] == {"topK": 40, "thinkingConfig": {"thinking_budget": 0}}
    assert body["cachedContent"] == "cachedContents/abc"
    with pytest.raises(UnsupportedFeatureError) as exc:
        encode_request(req(base, passthrough=struct({"logit_bias": {}})))
    assert "logit_bias" in exc.value.message
    with pytest.raises(UnsupportedFeatureError):
        encode_request(req(base, n=3))
    with pytest.raises(UnsupportedFeatureError):
        encode_request(req(types_pb2.Message(role=R.ROLE_USER, name="bob", content=[text("x")])))


def test_decode_calls_thoughts_signatures_and_usage() -> None:
    data = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "pondering", "thought": True, "thoughtSignature": "TS"},
                        {"text": "Here.", "thoughtSignature": "S1"},
                        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "S2"},
                        {"functionCall": {"name": "g", "args": {}, "id": "given"}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 3520,
            "cachedContentTokenCount": 3512,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 42,
        },
    }
    response = decode_response(data)
    parts = response.message.content
    kinds = [p.WhichOneof("part") for p in parts]
    assert kinds == ["reasoning", "text", "reasoning", "tool_call", "tool_call"]
    assert (parts[0].reasoning.text, parts[0].reasoning.signature) == ("pondering", "TS")
    assert parts[1].text == "Here." and parts[2].reasoning.signature == "S1"
    assert parts[2].reasoning.text == ""
    assert parts[3].tool_call.name == "f" and parts[3].tool_call.arguments == '{"a":1}'
    assert parts[3].tool_call.signature == "S2" and parts[3].tool_call.id.startswith("call_")
    assert parts[4].tool_call.id == "given"
    assert parts[3].tool_call.id != decode_response(data).message.content[3].tool_call.id
    assert response.finish_reason == R.FINISH_REASON_TOOL_CALLS
    u = response.usage
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens) == (
        3520,
        3512,
        44,
        42,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("STOP", R.FINISH_REASON_STOP),
        ("MAX_TOKENS", R.FINISH_REASON_LENGTH),
        ("SAFETY", R.FINISH_REASON_CONTENT_FILTER),
        ("RECITATION", R.FINISH_REASON_CONTENT_FILTER),
        ("BLOCKLIST", R.FINISH_REASON_CONTENT_FILTER),
        ("PROHIBITED_CONTENT", R.FINISH_REASON_CONTENT_FILTER),
    ],
)
def test_finish_reasons(raw: str, expected: int) -> None:
    data = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": raw}]}
    assert decode_response(data).finish_reason == expected


def test_blocked_prompt_is_content_filter() -> None:
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    response = decode_response(data)
    assert response.finish_reason == R.FINISH_REASON_CONTENT_FILTER
    assert response.usage.input_tokens == 4 and not response.message.content


def test_stream_decoder() -> None:
    d = StreamDecoder("gemini")
    frames = d.feed(
        {"candidates": [{"content": {"parts": [{"text": "thinking", "thought": True}]}}]}
    )
    frames += d.feed({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})
    frames += d.feed(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {
                                "functionCall": {"name": "a", "args": {"x": 1}},
                                "thoughtSignature": "S",
                            },
                            {"functionCall": {"name": "b", "args": {}}},
                        ]
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5},
        }
    )
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds == ["reasoning", "text", "tool_call", "tool_call"]
    a, b = frames[2].tool_call, frames[3].tool_call
    assert (a.index, a.name, a.arguments, a.signature) == (0, "a", '{"x":1}', "S")
    assert (b.index, b.name) == (1, "b") and a.id and b.id and a.id != b.id
    end = d.end().end
    assert end.finish_reason == R.FINISH_REASON_TOOL_CALLS
    assert (end.usage.input_tokens, end.usage.output_tokens) == (9, 5)

    cut = StreamDecoder("gemini")
    cut.feed({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})
    with pytest.raises(UpstreamStreamError):
        cut.end()
    with pytest.raises(UpstreamServerError):
        cut.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})


def test_error_bodies() -> None:
    key = "AIzaSyUnitTestKey0123456789abcdef"
    invalid_key = (
        b'{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT",'
        b'"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",'
        b'"reason":"API_KEY_INVALID"}]}}'
    )
    err = error_for_response(400, {}, invalid_key, "gemini", (key,))
    assert isinstance(err, UpstreamAuthError) and err.status == 400
    limited = error_for_response(
        429,
        {"retry-after": "9"},
        b'{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED","details":'
        b'[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"31s"}]}}',
        "gemini",
    )
    assert isinstance(limited, UpstreamRateLimitedError) and limited.retry_after == 31.0
    plain_429 = error_for_response(
        429, {"retry-after": "9"}, b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}', "g"
    )
    assert plain_429.retry_after == 9.0
    unavailable = error_for_response(
        503, {}, b'{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}', "gemini"
    )
    assert isinstance(unavailable, UpstreamServerError) and unavailable.retryable
    bad = error_for_response(
        400, {}, b'{"error":{"code":400,"message":"Penalty","status":"INVALID_ARGUMENT"}}', "g"
    )
    assert isinstance(bad, UpstreamBadRequestError) and bad.message == "Penalty"
    wrapped = error_for_response(
        500, {}, b'[{"error":{"code":500,"message":"x","status":"INTERNAL"}}]', "g"
    )
    assert isinstance(wrapped, UpstreamServerError)
