"""Anthropic responses, stream events and errors → contract (decode, stream, errors)."""

from __future__ import annotations

import orjson
import pytest
from switchboard.v1 import types_pb2

from server.core.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
)
from server.providers.anthropic.codec import finish_reason
from server.providers.anthropic.decode import decode_response
from server.providers.anthropic.errors import error_for_response
from server.providers.anthropic.stream import StreamDecoder

R = types_pb2


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", R.FINISH_REASON_STOP),
        ("stop_sequence", R.FINISH_REASON_STOP),
        ("max_tokens", R.FINISH_REASON_LENGTH),
        ("tool_use", R.FINISH_REASON_TOOL_CALLS),
        ("refusal", R.FINISH_REASON_CONTENT_FILTER),
        (None, R.FINISH_REASON_UNSPECIFIED),
    ],
)
def test_finish_reasons(stop: str | None, expected: int) -> None:
    assert finish_reason(stop) == expected


def test_decode_blocks_usage_with_cache_read_and_write() -> None:
    data = {
        "content": [
            {"type": "thinking", "thinking": "let me see", "signature": "sig1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 1111,
            "cache_creation_input_tokens": 418,
            "output_tokens": 33,
            "output_tokens_details": {"thinking_tokens": 12},
        },
    }
    response = decode_response(data)
    parts = response.message.content
    assert response.message.role == R.ROLE_ASSISTANT
    assert parts[0].reasoning.text == "let me see" and parts[0].reasoning.signature == "sig1"
    assert parts[1].reasoning.redacted_data == "opaque"
    assert parts[2].text == "Calling."
    assert parts[3].tool_call.id == "toolu_1"
    assert parts[3].tool_call.arguments == '{"a":1}'
    assert response.finish_reason == R.FINISH_REASON_TOOL_CALLS
    u = response.usage
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_input_tokens) == (1532, 1111, 418)
    assert (u.output_tokens, u.reasoning_tokens) == (33, 12)


def test_forced_json_tool_becomes_text_and_stop() -> None:
    data = {
        "content": [{"type": "tool_use", "id": "t", "name": "json_response", "input": {"x": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    response = decode_response(data, "json_response")
    assert [p.WhichOneof("part") for p in response.message.content] == ["text"]
    assert response.message.content[0].text == '{"x":1}'
    assert response.finish_reason == R.FINISH_REASON_STOP


def _events(decoder: StreamDecoder, events: list[dict]) -> list:
    frames = []
    for e in events:
        frames.extend(decoder.feed(e["type"], e))
    return frames


START = {
    "type": "message_start",
    "message": {
        "usage": {
            "input_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 7,
            "output_tokens": 1,
        }
    },
}


def test_stream_tool_calls_are_indexed_by_call_not_block() -> None:
    d = StreamDecoder("anthropic")
    frames = _events(
        d,
        [
            START,
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
            {"type": "ping"},
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
            },
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            },
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 40},
            },
            {"type": "message_stop"},
        ],
    )
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds == ["text", "tool_call", "tool_call", "tool_call", "tool_call", "tool_call"]
    calls = [f.tool_call for f in frames[1:]]
    assert (calls[0].index, calls[0].id, calls[0].name, calls[0].arguments) == (
        0,
        "toolu_a",
        "f",
        "",
    )
    assert [(c.index, c.arguments) for c in calls[1:]] == [
        (0, '{"a":'),
        (1, ""),
        (0, "1}"),
        (1, "{}"),
    ]
    assert (calls[2].id, calls[2].name) == ("toolu_b", "g")
    end = d.end().end
    assert end.finish_reason == R.FINISH_REASON_TOOL_CALLS
    assert (end.usage.input_tokens, end.usage.cached_input_tokens) == (112, 100)
    assert (end.usage.cache_write_input_tokens, end.usage.output_tokens) == (7, 40)


def test_stream_thinking_goes_to_reasoning_frames() -> None:
    d = StreamDecoder("anthropic")
    frames = _events(
        d,
        [
            START,
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "SIG"},
            },
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "text_delta", "text": "ok"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 9},
            },
            {"type": "message_stop"},
        ],
    )
    assert [f.WhichOneof("frame") for f in frames] == ["reasoning", "reasoning", "text"]
    assert frames[0].reasoning.text == "hmm" and frames[1].reasoning.signature == "SIG"
    assert d.end().end.finish_reason == R.FINISH_REASON_STOP


def test_stream_json_tool_streams_as_text() -> None:
    d = StreamDecoder("anthropic", "json_response")
    frames = _events(
        d,
        [
            START,
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "tool_use",
                    "id": "t",
                    "name": "json_response",
                    "input": {},
                },
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"x"'},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": ":1}"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 4},
            },
            {"type": "message_stop"},
        ],
    )
    assert "".join(f.text.text for f in frames) == '{"x":1}'
    assert d.end().end.finish_reason == R.FINISH_REASON_STOP


def test_stream_error_event_and_missing_message_stop() -> None:
    d = StreamDecoder("anthropic")
    _events(d, [START])
    with pytest.raises(UpstreamServerError) as exc:
        d.feed(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    assert exc.value.retryable and exc.value.message == "Overloaded"
    with pytest.raises(UpstreamStreamError):
        d.end()
    with pytest.raises(UpstreamStreamError):
        d.feed("error", {"type": "error", "error": {"type": "mystery", "message": "?"}})
    with pytest.raises(UpstreamStreamError) as broke:
        d.feed("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}})
    assert broke.value.status == 500 and broke.value.retryable
    with pytest.raises(UpstreamRateLimitedError):
        d.feed("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "x"}})
    with pytest.raises(UpstreamBadRequestError):
        d.feed(
            "error", {"type": "error", "error": {"type": "invalid_request_error", "message": "x"}}
        )


def test_error_bodies_map_to_gateway_errors_without_the_key() -> None:
    key = "sk-ant-api03-SECRETSECRETSECRET"
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad field"}}'
    err = error_for_response(400, {}, body, "anthropic", (key,))
    assert isinstance(err, UpstreamBadRequestError) and err.message == "bad field"
    assert not err.retryable
    limited = error_for_response(
        429,
        {"retry-after": "7"},
        b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}',
        "anthropic",
    )
    assert isinstance(limited, UpstreamRateLimitedError) and limited.retry_after == 7.0
    overloaded = error_for_response(
        529, {}, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "a"
    )
    assert isinstance(overloaded, UpstreamServerError) and overloaded.retryable
    auth = error_for_response(
        401,
        {},
        orjson.dumps({"type": "error", "error": {"type": "authentication_error", "message": key}}),
        "anthropic",
        (key,),
    )
    assert isinstance(auth, UpstreamAuthError)
    assert key not in auth.message and "SECRET" not in repr(auth.__dict__)
    garbage = error_for_response(500, {}, b"<html>oops</html>", "anthropic")
    assert isinstance(garbage, UpstreamServerError) and "html" not in garbage.message


def test_stream_redacted_thinking_becomes_one_redacted_reasoning_frame() -> None:
    """A streamed redacted_thinking block is passed on whole (never shown as text)."""
    d = StreamDecoder("anthropic")
    block = {"type": "redacted_thinking", "data": "opaque"}
    frames = _events(
        d,
        [
            START,
            {"type": "content_block_start", "index": 0, "content_block": block},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
            {"type": "message_stop"},
        ],
    )
    assert [f.WhichOneof("frame") for f in frames] == ["reasoning"]
    assert frames[0].reasoning.redacted_data == "opaque"
    assert not frames[0].reasoning.text
