"""chat.completion JSON → contract (server.providers.openai_compat.decode)."""

from __future__ import annotations

import pytest
from switchboard.v1 import types_pb2

from server.providers.openai_compat.codec import decode_usage
from server.providers.openai_compat.decode import decode_response
from server.providers.openai_compat.errors import error_fields


@pytest.mark.parametrize(
    ("wire", "finish"),
    [
        ("stop", types_pb2.FINISH_REASON_STOP),
        ("length", types_pb2.FINISH_REASON_LENGTH),
        ("tool_calls", types_pb2.FINISH_REASON_TOOL_CALLS),
        ("function_call", types_pb2.FINISH_REASON_TOOL_CALLS),
        ("content_filter", types_pb2.FINISH_REASON_CONTENT_FILTER),
        (None, types_pb2.FINISH_REASON_STOP),
        ("something_new", types_pb2.FINISH_REASON_STOP),
    ],
)
def test_finish_reasons(wire: str | None, finish: int) -> None:
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": wire}]}
    assert decode_response(body)[1] == finish


def test_legacy_function_call_and_missing_ids() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "function_call": {"name": "lookup", "arguments": '{"q": 1}'},
                    "tool_calls": [{"function": {"name": "other", "arguments": {"a": True}}}],
                },
                "finish_reason": "function_call",
            }
        ]
    }
    message, finish, _ = decode_response(body)
    calls = [p.tool_call for p in message.content]
    assert [(c.name, c.arguments) for c in calls] == [
        ("other", '{"a":true}'),
        ("lookup", '{"q": 1}'),
    ]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert finish == types_pb2.FINISH_REASON_TOOL_CALLS


def test_mistral_list_content_with_thinking() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": [
                        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                        {"type": "text", "text": "Hi"},
                        {"type": "text", "text": "!"},
                    ]
                },
                "finish_reason": "stop",
            }
        ]
    }
    message, _, _ = decode_response(body)
    assert [p.WhichOneof("part") for p in message.content] == ["reasoning", "text"]
    assert message.content[0].reasoning.text == "hmm" and message.content[1].text == "Hi!"


def test_usage_variants() -> None:
    assert decode_usage(None) == types_pb2.Usage()
    deepseek = decode_usage(
        {"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8}
    )
    assert deepseek.cached_input_tokens == 8
    garbage = decode_usage({"prompt_tokens": "10", "completion_tokens": True})
    assert garbage == types_pb2.Usage()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"error": {"message": "m", "code": "c", "type": "t"}}, ("m", "c")),
        ({"error": {"message": "m", "code": 429, "type": "t"}}, ("m", "t")),
        ({"error": {"message": "m", "code": 429}}, ("m", None)),
        ({"error": "plain"}, ("plain", None)),
        ({"object": "error", "message": "mistral style"}, ("mistral style", None)),
        ({"detail": "fastapi"}, ("fastapi", None)),
        ({"detail": [{"msg": "field required", "input": "SECRET"}]}, ("field required", None)),
        ([1, 2], (None, None)),
        (None, (None, None)),
    ],
)
def test_error_fields(body: object, fields: tuple[str | None, str | None]) -> None:
    assert error_fields(body) == fields
