"""Chunk decoding (server.providers.openai_compat.stream), without a network; SSE framing is in
test_sse.py."""

from __future__ import annotations

import orjson
import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UpstreamStreamError
from server.providers.openai_compat.stream import StreamDecoder


def chunk(**fields: object) -> bytes:
    return orjson.dumps({"object": "chat.completion.chunk", **fields})


def delta(payload: dict, finish: str | None = None, index: int = 0) -> bytes:
    return chunk(choices=[{"index": index, "delta": payload, "finish_reason": finish}])


def frames_of(decoder: StreamDecoder, *payloads: bytes) -> list[chat_pb2.StreamChatResponse]:
    out: list[chat_pb2.StreamChatResponse] = []
    for payload in payloads:
        out.extend(decoder.decode(b"", payload))
    return out


def test_text_reasoning_and_usage() -> None:
    decoder = StreamDecoder("p")
    frames = frames_of(
        decoder,
        delta({"role": "assistant", "content": ""}),
        delta({"reasoning_content": "hmm"}),
        delta({"reasoning": " ok"}),
        delta({"content": "Hel"}),
        delta({"content": "lo"}),
        delta({}, "stop"),
        chunk(
            choices=[],
            usage={
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        ),
        b"[DONE]",
    )
    assert [f.WhichOneof("frame") for f in frames] == ["reasoning", "reasoning", "text", "text"]
    assert "".join(f.text.text for f in frames) == "Hello"
    assert decoder.complete and decoder.done
    end = decoder.end_frame().end
    assert end.finish_reason == types_pb2.FINISH_REASON_STOP
    assert end.usage == types_pb2.Usage(
        input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2
    )


def test_usage_null_chunks_do_not_erase_usage() -> None:
    decoder = StreamDecoder("p")
    frames_of(
        decoder,
        chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1}),
        chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=None),
    )
    assert decoder.end_frame().end.usage.input_tokens == 3


def test_groq_x_groq_usage() -> None:
    decoder = StreamDecoder("p")
    frames_of(
        decoder,
        chunk(
            choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
            x_groq={"usage": {"prompt_tokens": 8, "completion_tokens": 2}},
        ),
    )
    assert decoder.end_frame().end.usage.output_tokens == 2


def test_tool_calls_by_index_with_fragments_interleaved() -> None:
    decoder = StreamDecoder("p")
    frames = frames_of(
        decoder,
        delta(
            {"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "a", "arguments": ""}}]}
        ),
        delta(
            {"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "b", "arguments": ""}}]}
        ),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
        delta({"tool_calls": [{"index": 1, "function": {"arguments": '{"y":'}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        delta({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
        delta({}, "tool_calls"),
    )
    calls = [f.tool_call for f in frames]
    assert [(c.index, c.id, c.name) for c in calls[:2]] == [(0, "c0", "a"), (1, "c1", "b")]
    assert all(not c.id and not c.name for c in calls[2:])
    joined = {i: "".join(c.arguments for c in calls if c.index == i) for i in (0, 1)}
    assert joined == {0: '{"x":1}', 1: '{"y":2}'}
    assert decoder.end_frame().end.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS


def test_whole_calls_under_one_index_and_missing_ids_become_separate_calls() -> None:
    decoder = StreamDecoder("p")
    frames = frames_of(
        decoder,
        delta(
            {"tool_calls": [{"index": 0, "id": "a1", "function": {"name": "a", "arguments": "{}"}}]}
        ),
        delta(
            {"tool_calls": [{"index": 0, "id": "b1", "function": {"name": "b", "arguments": "{}"}}]}
        ),
        delta({"tool_calls": [{"function": {"name": "c", "arguments": {"k": 1}}}]}),
        delta({}, "stop"),
    )
    calls = [f.tool_call for f in frames]
    assert [(c.index, c.name) for c in calls] == [(0, "a"), (1, "b"), (2, "c")]
    assert calls[2].id.startswith("call_") and calls[2].arguments == '{"k":1}'
    # Tool calls with finish_reason "stop" (some compatible servers) still mean TOOL_CALLS.
    assert decoder.end_frame().end.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS


def test_error_object_in_a_chunk_raises_with_the_safe_message_only() -> None:
    decoder = StreamDecoder("openrouter", ("sk-secret-key-123456",))
    payload = chunk(
        error={
            "code": 400,
            "message": "Token limit reached for sk-secret-key-123456",
            "metadata": {"raw": "RAW UPSTREAM BODY"},
        },
        choices=[],
    )
    with pytest.raises(UpstreamStreamError) as caught:
        decoder.decode(b"", payload)
    assert "Token limit reached" in caught.value.message
    assert "sk-secret" not in caught.value.message
    assert "RAW UPSTREAM" not in caught.value.message
    assert caught.value.provider == "openrouter"


def test_an_error_event_type_raises() -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        StreamDecoder("p").decode(b"error", b'{"message": "overloaded"}')
    assert caught.value.message == "overloaded"


def test_malformed_chunk_raises_without_echoing_it() -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        StreamDecoder("p").decode(b"", b"{not json SECRET")
    assert "SECRET" not in caught.value.message


def test_incomplete_until_finish_or_done() -> None:
    decoder = StreamDecoder("p")
    frames_of(decoder, delta({"content": "partial"}))
    assert not decoder.complete
    frames_of(decoder, delta({}, "length"))
    assert decoder.complete
    assert decoder.end_frame().end.finish_reason == types_pb2.FINISH_REASON_LENGTH


def test_other_choices_are_ignored_and_mistral_content_parts_are_read() -> None:
    decoder = StreamDecoder("p")
    frames = frames_of(
        decoder,
        delta({"content": "ignored"}, index=1),
        delta(
            {
                "content": [
                    {"type": "thinking", "thinking": [{"type": "text", "text": "plan"}]},
                    {"type": "text", "text": "answer"},
                ]
            }
        ),
    )
    assert [(f.WhichOneof("frame")) for f in frames] == ["reasoning", "text"]
    assert frames[0].reasoning.text == "plan" and frames[1].text.text == "answer"


def test_text_beside_other_delta_fields_keeps_every_part() -> None:
    # A delta that is only text takes a shorter path; one that carries anything else besides
    # (a null reasoning field, reasoning, a tool call) must decode the same as before.
    decoder = StreamDecoder("p")
    frames = frames_of(
        decoder,
        delta({"content": "a", "reasoning_content": None}),
        delta({"content": "b", "reasoning": "why"}),
        delta(
            {
                "content": "c",
                "tool_calls": [
                    {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}
                ],
            }
        ),
        delta({"content": "d", "role": "assistant", "refusal": None}),
    )
    kinds = [(f.WhichOneof("frame"), f.text.text or f.reasoning.text) for f in frames]
    assert kinds == [
        ("text", "a"),
        ("reasoning", "why"),
        ("text", "b"),
        ("text", "c"),
        ("tool_call", ""),
        ("text", "d"),
    ]
    assert frames[4].tool_call.name == "f" and frames[4].tool_call.id == "call_1"
